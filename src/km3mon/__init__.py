"""km3mon: online monitoring for the KM3NeT neutrino telescopes."""

__version__ = "0.1.0"
