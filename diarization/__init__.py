"""The service's one entry point, above every door: ``diarization shim|consumer|models`` (``cli``)."""
