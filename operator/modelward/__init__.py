"""modelward: admission controller and operator protecting AI model-serving deployments.

The package is layered; each layer imports only the ones below it (checked by import-linter):

    cli                       entry points (``modelward run|check|verify|scan|...``)
    admission, controller     the HTTPS admission app, the kopf handlers
    observability, settings   metrics, logging, the validated settings object
    engine, integrity         pure policy evaluation; model signatures and payload scanning
    api, errors               CRD schemas and wire types; the exception hierarchy
"""

__version__ = "0.1.0"
