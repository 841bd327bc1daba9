"""The shipped actions (Kubernetes): plan (read-only), apply (one write), verify."""
