"""The process framework every monitor runs in: the receive loop and render ticks
(:mod:`.monitor`), time guards and run tracking (:mod:`.guards`), decoding of the subscribed
messages (:mod:`.decoding`), accumulation helpers (:mod:`.binning`), atomic outputs
(:mod:`.output`) and the freshness record each process publishes (:mod:`.freshness`)."""
