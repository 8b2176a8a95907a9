"""Analyses that show farside at work; each is an importable module of plain functions.

* :mod:`farside.examples.dimuon`: the dimuon mass spectrum of NanoAOD-like files
  (``notebooks/dimuon.ipynb``, data from :mod:`farside.datasets`).

Nothing is imported here: the examples need the ``analysis`` extra (uproot, awkward, hist),
which the client itself does not.
"""
