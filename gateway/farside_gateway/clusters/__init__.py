"""Interactive Dask clusters: one scheduler process per cluster, workers as pool leases.

``config`` is the ``[clusters]`` table, ``scheduler`` the scheduler process's program,
``process`` the gateway's handle on one, ``store`` the database side (clusters and their
worker leases), ``manager`` the lifecycle and the owners' requests (create, scale, stop),
``reconciler`` the pass that keeps each cluster as asked, ``leases`` its worker leases.
"""
