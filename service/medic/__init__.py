"""PlayCode Medic: an automated first responder for PlayCode.gg's Kubernetes stack."""

__version__ = "0.1.0"
