"""The controller side: kopf watches feeding the cluster state, policy status, Events."""
