"""cert-manager in the fake cluster: its kinds and a small issuing controller.

Kinds (as the CRDs serve them, with a ``status`` subresource): ``cert-manager.io/v1``
Certificate, CertificateRequest, Issuer, ClusterIssuer (cluster-scoped);
``acme.cert-manager.io/v1`` Order, Challenge.

The controller (run by ``settle()``) does what cert-manager does with a Certificate whose
``Issuing`` condition is True (set by cert-manager at renewal time, or by ``cmctl renew``
through the status subresource):

- issuer missing or not Ready: a CertificateRequest stays ``Pending`` with the issuer's reason
  and the Certificate keeps issuing;
- an ACME failure configured with :meth:`CertManager.fail_acme`: a CertificateRequest, an Order
  and a Challenge end ``invalid`` with the ACME reason; the Certificate gets ``Issuing`` False
  (reason ``Failed``), ``lastFailureTime`` and ``failedIssuanceAttempts``;
- otherwise: the certificate is issued: ``revision`` + 1, new ``notBefore``/``notAfter``
  (90 days), ``renewalTime`` (30 days before), ``Ready`` True, ``Issuing`` removed.

Owner references link Certificate -> CertificateRequest -> Order -> Challenge (controller), and
the annotations ``cert-manager.io/certificate-name`` / ``certificate-revision`` are set on the
request, as cert-manager does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.kube_cluster import FakeCluster
from tests.fakes.kube_store import Obj, ResourceType, format_time, parse_time
from tests.fakes.kube_workloads import owner_reference

CERT_GROUP = "cert-manager.io"
ACME_GROUP = "acme.cert-manager.io"
CERT_MANAGER_TYPES: tuple[ResourceType, ...] = (
    ResourceType(CERT_GROUP, "v1", "certificates", "Certificate", generation=True),
    ResourceType(CERT_GROUP, "v1", "certificaterequests", "CertificateRequest", generation=True),
    ResourceType(CERT_GROUP, "v1", "issuers", "Issuer", generation=True),
    ResourceType(CERT_GROUP, "v1", "clusterissuers", "ClusterIssuer", namespaced=False, generation=True),
    ResourceType(ACME_GROUP, "v1", "orders", "Order", generation=True),
    ResourceType(ACME_GROUP, "v1", "challenges", "Challenge", generation=True),
)
LIFETIME = timedelta(days=90)
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class AcmeFailure:
    """How the ACME issuance of one Certificate fails."""

    challenge_type: str = "HTTP-01"  # or "DNS-01"
    reason: str = ""
    state: str = "invalid"  # the Order's and Challenge's final state


def condition(kind: str, status: str, reason: str, message: str, when: str) -> Obj:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": when}


def set_condition(status: Obj, cond: Obj) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
    status["conditions"] = [*conds, cond]


def get_condition(obj: Mapping[str, Any], kind: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


class CertManager:
    """Installs the cert-manager kinds and controller into ``cluster``; seeding helpers."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.failures: dict[tuple[str, str], AcmeFailure] = {}
        for rt in CERT_MANAGER_TYPES:
            cluster.registry.register(rt)
        cluster.controllers.append(self.sync)

    @classmethod
    def installed(cls, cluster: FakeCluster) -> CertManager:
        """The CertManager installed into ``cluster`` (a new one if none is)."""
        for controller in cluster.controllers:
            owner = getattr(controller, "__self__", None)
            if isinstance(owner, cls):
                return owner
        return cls(cluster)

    # ------------------------------------------------------------------ seeding

    def _now(self) -> datetime:
        return self.cluster.clock.now()

    def add_issuer(self, namespace: str | None, name: str, *, ready: bool = True,
                   reason: str = "ACMEAccountRegistered",
                   message: str = "The ACME account was registered with the ACME server") -> Obj:
        """An ACME Issuer (``namespace``) or ClusterIssuer (``namespace`` None)."""
        when = format_time(self._now())
        meta: Obj = {"name": name}
        if namespace is not None:
            meta["namespace"] = namespace
        return self.cluster.add_object({
            "apiVersion": f"{CERT_GROUP}/v1", "kind": "Issuer" if namespace else "ClusterIssuer",
            "metadata": meta,
            "spec": {"acme": {"server": "https://acme-v02.api.letsencrypt.org/directory",
                              "privateKeySecretRef": {"name": f"{name}-account-key"},
                              "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]}},
            "status": {"conditions": [condition("Ready", "True" if ready else "False", reason,
                                                message, when)]},
        })

    def add_certificate(self, namespace: str, name: str, *, dns_names: tuple[str, ...] = (),
                        issuer: str = "letsencrypt", issuer_kind: str = "ClusterIssuer",
                        not_after: datetime | None = None, revision: int = 1,
                        ready: bool = True) -> Obj:
        """A Certificate issued ``revision`` times, valid until ``not_after`` (default: 60 days
        from now). ``ready=False`` with a ``not_after`` in the past models an expired one."""
        now = self._now()
        not_after = not_after or now + timedelta(days=60)
        when = format_time(now)
        expired = not_after <= now
        status: Obj = {
            "notBefore": format_time(not_after - LIFETIME),
            "notAfter": format_time(not_after),
            "renewalTime": format_time(not_after - RENEW_BEFORE),
            "revision": revision,
            "conditions": [condition(
                "Ready", "True" if ready and not expired else "False",
                "Ready" if ready and not expired else "Expired",
                "Certificate is up to date and has not expired" if ready and not expired
                else f"Certificate expired on {not_after:%a, %d %b %Y %H:%M:%S UTC}", when)],
        }
        return self.cluster.add_object({
            "apiVersion": f"{CERT_GROUP}/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"secretName": name, "dnsNames": list(dns_names or (f"{name}.example",)),
                     "issuerRef": {"name": issuer, "kind": issuer_kind, "group": CERT_GROUP}},
            "status": status,
        })

    def fail_acme(self, namespace: str, name: str, *, challenge_type: str = "HTTP-01",
                  reason: str = "", state: str = "invalid") -> None:
        """Every issuance of the Certificate from now on fails at its ACME challenge."""
        if not reason:
            reason = ("Waiting for HTTP-01 challenge propagation: wrong status code '404', "
                      "expected '200'" if challenge_type == "HTTP-01" else
                      "DNS record for \"playcode.example\" not yet propagated")
        self.failures[(namespace, name)] = AcmeFailure(challenge_type, reason, state)

    def heal(self, namespace: str, name: str) -> None:
        self.failures.pop((namespace, name), None)

    def trigger(self, namespace: str, name: str, reason: str = "Renewing",
                message: str = "Renewing certificate as renewal was scheduled at now") -> Obj:
        """Start an issuance, as cert-manager does at ``renewalTime`` (``Issuing`` True)."""
        cert = self.cluster.get_object("Certificate", namespace, name)
        status = copy.deepcopy(cert.get("status") or {})
        set_condition(status, condition("Issuing", "True", reason, message,
                                        format_time(self._now())))
        return self.cluster.patch_object("Certificate", namespace, name, {"status": status})

    # ------------------------------------------------------------------ controller

    def sync(self) -> bool:
        changed = False
        for cert in self.cluster.list_objects("Certificate"):
            issuing = get_condition(cert, "Issuing")
            if issuing is not None and issuing.get("status") == "True":
                changed |= self._issue(cert)
        return changed

    def _issuer_problem(self, cert: Obj) -> str | None:
        ref = (cert.get("spec") or {}).get("issuerRef") or {}
        kind = ref.get("kind") or "Issuer"
        ns = cert["metadata"]["namespace"] if kind == "Issuer" else None
        issuer = self.cluster.find_object(kind, ns, str(ref.get("name", "")))
        if issuer is None:
            return (f'Referenced "{kind}" not found: {kind.lower()}.cert-manager.io '
                    f'"{ref.get("name")}" not found')
        ready = get_condition(issuer, "Ready")
        if ready is None or ready.get("status") != "True":
            why = (ready or {}).get("message") or "no Ready condition"
            return f"Referenced issuer does not have a Ready status condition: {why}"
        return None

    def _request(self, cert: Obj, revision: int) -> Obj:
        """The CertificateRequest of ``revision`` (created once)."""
        ns, name = cert["metadata"]["namespace"], cert["metadata"]["name"]
        cr_name = f"{name}-{revision}"
        found = self.cluster.find_object("CertificateRequest", ns, cr_name)
        if found is not None:
            return found
        return self.cluster.add_object({
            "apiVersion": f"{CERT_GROUP}/v1", "kind": "CertificateRequest",
            "metadata": {"name": cr_name, "namespace": ns,
                         "annotations": {"cert-manager.io/certificate-name": name,
                                         "cert-manager.io/certificate-revision": str(revision)},
                         "ownerReferences": [owner_reference(cert)]},
            "spec": {"issuerRef": (cert.get("spec") or {}).get("issuerRef"),
                     "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"},
        })

    def _set_status(self, kind: str, obj: Obj, status: Obj) -> bool:
        if (obj.get("status") or {}) == status:
            return False
        current = self.cluster.get_object(kind, obj["metadata"].get("namespace"),
                                          obj["metadata"]["name"])
        current["status"] = status
        self.cluster.update_object(current)
        return True

    def _issue(self, cert: Obj) -> bool:
        ns, name = cert["metadata"]["namespace"], cert["metadata"]["name"]
        status = copy.deepcopy(cert.get("status") or {})
        revision = int(status.get("revision") or 0) + 1
        now = format_time(self._now())
        request = self._request(cert, revision)
        cr_status: Obj = copy.deepcopy(request.get("status") or {})
        set_condition(cr_status, condition("Approved", "True", "cert-manager.io",
                                           "Certificate request has been approved by "
                                           "cert-manager.io", now))
        problem = self._issuer_problem(cert)
        failure = self.failures.get((ns, name))
        if problem is not None:
            set_condition(cr_status, condition("Ready", "False", "Pending", problem, now))
            return self._set_status("CertificateRequest", request, cr_status)
        if failure is not None:
            order = self._order(request, failure, cert)
            message = (f'Failed to wait for order resource "{order["metadata"]["name"]}" to '
                       f'become ready: order is in "{failure.state}" state: {failure.reason}')
            set_condition(cr_status, condition("Ready", "False", "Failed", message, now))
            cr_status["failureTime"] = now
            changed = self._set_status("CertificateRequest", request, cr_status)
            set_condition(status, condition(
                "Issuing", "False", "Failed",
                f"The certificate request has failed to complete and will be retried: {message}",
                now))
            status["lastFailureTime"] = now
            status["failedIssuanceAttempts"] = int(status.get("failedIssuanceAttempts") or 0) + 1
            return self._set_status("Certificate", cert, status) or changed
        set_condition(cr_status, condition("Ready", "True", "Issued",
                                           "Certificate fetched from issuer successfully", now))
        changed = self._set_status("CertificateRequest", request, cr_status)
        not_after = parse_time(now) + LIFETIME
        status.update(revision=revision, notBefore=now, notAfter=format_time(not_after),
                      renewalTime=format_time(not_after - RENEW_BEFORE))
        status.pop("lastFailureTime", None)
        status.pop("failedIssuanceAttempts", None)
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") != "Issuing"]
        set_condition(status, condition("Ready", "True", "Ready",
                                        "Certificate is up to date and has not expired", now))
        return self._set_status("Certificate", cert, status) or changed

    def _order(self, request: Obj, failure: AcmeFailure, cert: Obj) -> Obj:
        ns = request["metadata"]["namespace"]
        order_name = f"{request['metadata']['name']}-1234567890"
        order = self.cluster.find_object("Order", ns, order_name)
        dns_name = ((cert.get("spec") or {}).get("dnsNames") or ["playcode.example"])[0]
        if order is None:
            order = self.cluster.add_object({
                "apiVersion": f"{ACME_GROUP}/v1", "kind": "Order",
                "metadata": {"name": order_name, "namespace": ns,
                             "ownerReferences": [owner_reference(request)]},
                "spec": {"dnsNames": [dns_name], "issuerRef": (request.get("spec") or {}).get(
                    "issuerRef"), "request": request["spec"]["request"]},
                "status": {"state": failure.state, "reason": failure.reason,
                           "url": "https://acme-v02.api.letsencrypt.org/acme/order/1/2"},
            })
        challenge_name = f"{order_name}-987654321"
        if self.cluster.find_object("Challenge", ns, challenge_name) is None:
            self.cluster.add_object({
                "apiVersion": f"{ACME_GROUP}/v1", "kind": "Challenge",
                "metadata": {"name": challenge_name, "namespace": ns,
                             "ownerReferences": [owner_reference(order)]},
                "spec": {"type": failure.challenge_type, "dnsName": dns_name,
                         "token": "tok", "key": "tok.thumbprint",
                         "url": "https://acme-v02.api.letsencrypt.org/acme/chall/1/2/3"},
                "status": {"state": failure.state, "reason": failure.reason,
                           "presented": True, "processing": failure.state == "pending"},
            })
        return order
