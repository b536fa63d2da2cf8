"""The admission path: AdmissionReview in, decision out, over a lean aiohttp HTTPS app."""
