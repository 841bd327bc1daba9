"""Assembly: settings, the catalogue of shipped plugins, the runtime, the pipeline and its
workers, approvals, the command line and the HTTP endpoints."""
