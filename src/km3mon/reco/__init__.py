"""Online muon reconstruction: the Cherenkov time model, hit selection and batched fits.

``model`` holds the physics (constants, time model, KM3NeT angle conventions), ``hits`` the
selection of the hits a fit uses, ``kernels`` the compiled fits (numba) and ``fit`` the batch
driver the ``reco`` monitor calls. Everything works on whole batches of events at once.
"""
