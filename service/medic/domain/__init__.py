"""The domain: pure data and rules about it (alerts, incidents, evidence, findings,
errors, durations, redaction). Imports no I/O library and nothing else from Medic."""
