"""Data sources without a DAQ: simulator, replay of recordings, Detector Manager stand-in.

They speak exactly what the DAQ speaks (ControlHost frames of real DAQ payloads, the
Detector Manager's HTTP monitoring API), so the whole suite can be tried, tested and
benchmarked anywhere.
"""
