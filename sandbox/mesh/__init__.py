"""The pure model of the mesh: Istio resources, the Compose topology, and their analysis.

Nothing in this package imports anything else from `sandbox`, touches a socket or the clock.
"""
