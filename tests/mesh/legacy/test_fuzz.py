"""Whatever shape the legacy YAML has, loading and converting it never raises; and legacy YAML
that loads cleanly converts to modern YAML that loads cleanly.

Random shapes rarely load cleanly (about one example in ten), so the second property gets its own
strategy: documents shaped like the v1alpha1 protos (specs.py) with values from the same small
vocabulary, which load cleanly about two times in three.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.mesh.legacy.convert import convert_texts
from sandbox.mesh.loader import load_texts
from sandbox.mesh.yamlsrc import dump_all_yaml

WORDS = st.sampled_from(
    ["*", "", "reviews", "reviews.default.svc.cluster.local", "*.default.svc.cluster.local", "rev*", "/a/*", "GET",
     "cluster.local/ns/foo/sa/x", "8080", "ON", "OFF", "ON_WITH_INCLUSION", "ON_WITH_EXCLUSION", "PERMISSIVE",
     "STRICT", "USE_ORIGIN", "destination.labels[version]", "destination.port", "request.headers[x]", "source.ip",
     "10.0.0.0/8", "default", "foo", "^re$"]
)  # fmt: skip
KEYS = st.sampled_from(
    ["services", "paths", "notPaths", "methods", "ports", "constraints", "key", "values", "subjects", "user",
     "names", "notNames", "properties", "roleRef", "name", "kind", "mode", "inclusion", "exclusion", "namespaces",
     "enforcementMode", "targets", "peers", "mtls", "origins", "jwt", "issuer", "triggerRules", "includedPaths",
     "excludedPaths", "exact", "prefix", "regex", "number", "rules", "actions", "role", "peerIsOptional",
     "originIsOptional", "principalBinding", "groups", "ips"]
)  # fmt: skip
VALUES: Any = st.recursive(
    st.one_of(WORDS, st.integers(-1, 70000), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=25,
)
KINDS = st.sampled_from(
    [("rbac.istio.io/v1alpha1", k) for k in ("ServiceRole", "ServiceRoleBinding", "ClusterRbacConfig", "RbacConfig")]
    + [("authentication.istio.io/v1alpha1", k) for k in ("Policy", "MeshPolicy")]
)
DOCS = st.lists(
    st.tuples(KINDS, st.sampled_from(["default", "viewer", "x"]), st.sampled_from(["default", "foo", None]), VALUES),
    min_size=1,
    max_size=5,
)


def _opt(fields: dict[str, Any]) -> Any:
    return st.fixed_dictionaries({}, optional=fields)


_LIST, _PORTS = st.lists(WORDS, max_size=3), st.lists(st.integers(-1, 70000), max_size=2)
_NAME = st.sampled_from(["default", "viewer", "x"])
_RULE = _opt(
    {"services": _LIST, "hosts": _LIST, "notHosts": _LIST, "paths": _LIST, "notPaths": _LIST, "methods": _LIST,
     "notMethods": _LIST, "ports": _PORTS, "notPorts": _PORTS,
     "constraints": st.lists(_opt({"key": WORDS, "values": _LIST}), max_size=2)}
)  # fmt: skip
_SUBJECT = _opt(
    {"user": WORDS, "names": _LIST, "notNames": _LIST, "group": WORDS, "groups": _LIST, "namespaces": _LIST,
     "notNamespaces": _LIST, "ips": _LIST, "notIps": _LIST, "properties": st.dictionaries(WORDS, WORDS, max_size=2)}
)  # fmt: skip
_TARGET = _opt({"services": _LIST, "namespaces": _LIST})
_MATCH = _opt({"exact": WORDS, "prefix": WORDS, "suffix": WORDS, "regex": WORDS})
_TRIGGER = _opt({"excludedPaths": st.lists(_MATCH, max_size=2), "includedPaths": st.lists(_MATCH, max_size=2)})
_JWT = _opt({"issuer": WORDS, "audiences": _LIST, "jwksUri": WORDS, "triggerRules": st.lists(_TRIGGER, max_size=2)})
_MTLS = st.one_of(st.none(), _opt({"mode": st.sampled_from(["STRICT", "PERMISSIVE"]), "allowTls": st.booleans()}))
_PORT = _opt({"number": st.integers(-1, 70000), "name": WORDS})
_RBAC, _AUTHN = "rbac.istio.io/v1alpha1", "authentication.istio.io/v1alpha1"
_ROLE = _opt({"rules": st.lists(_RULE, max_size=3)})
_BINDING = _opt(
    {"subjects": st.lists(_SUBJECT, max_size=2), "roleRef": st.fixed_dictionaries({"name": _NAME}),
     "mode": st.sampled_from(["ENFORCED", "PERMISSIVE"]), "actions": st.lists(_RULE, max_size=2),
     "role": st.sampled_from(["default", "/viewer", "x"])}
)  # fmt: skip
_CONFIG = _opt(
    {"mode": st.sampled_from(["OFF", "ON", "ON_WITH_INCLUSION", "ON_WITH_EXCLUSION"]), "inclusion": _TARGET,
     "exclusion": _TARGET, "enforcementMode": st.sampled_from(["ENFORCED", "PERMISSIVE"])}
)  # fmt: skip
_POLICY = _opt(
    {"targets": st.lists(_opt({"name": WORDS, "ports": st.lists(_PORT, max_size=2)}), max_size=2),
     "peers": st.lists(st.fixed_dictionaries({"mtls": _MTLS}), max_size=2), "peerIsOptional": st.booleans(),
     "origins": st.lists(_opt({"jwt": _JWT}), max_size=2), "originIsOptional": st.booleans(),
     "principalBinding": st.sampled_from(["USE_PEER", "USE_ORIGIN"])}
)  # fmt: skip
SHAPED_SPECS = st.one_of(
    st.tuples(st.just((_RBAC, "ServiceRole")), _ROLE),
    st.tuples(st.just((_RBAC, "ServiceRoleBinding")), _BINDING),
    st.tuples(st.sampled_from([(_RBAC, "ClusterRbacConfig"), (_RBAC, "RbacConfig")]), _CONFIG),
    st.tuples(st.sampled_from([(_AUTHN, "Policy"), (_AUTHN, "MeshPolicy")]), _POLICY),
)
SHAPED_DOCS = st.lists(
    st.tuples(SHAPED_SPECS, _NAME, st.sampled_from(["default", "foo", "istio-system", None])).map(
        lambda t: (t[0][0], t[1], t[2], t[0][1])
    ),
    min_size=1,
    max_size=5,
)
# The same examples on every run and no example database: a red run reproduces anywhere, and
# nothing depends on what an earlier run (or another checkout) left in .hypothesis/.
PROPERTY = settings(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _text(docs: list[Any]) -> str:
    documents = []
    for (api, kind), name, namespace, spec in docs:
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        documents.append({"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec})
    return dump_all_yaml(documents)


@settings(PROPERTY, max_examples=150)
@given(DOCS)
def test_any_legacy_input_loads_and_converts_without_raising(docs: list[Any]) -> None:
    text = _text(docs)
    loaded = load_texts([("f.yaml", text)])
    converted = convert_texts([("f.yaml", text)])
    if not loaded.errors:
        assert not load_texts([("out.yaml", converted.text)]).errors


@settings(PROPERTY, max_examples=120)
@given(SHAPED_DOCS)
def test_clean_legacy_input_converts_to_clean_modern_yaml(docs: list[Any]) -> None:
    text = _text(docs)
    if load_texts([("f.yaml", text)]).errors:
        return
    converted = convert_texts([("f.yaml", text)])
    assert not converted.errors
    again = load_texts([("out.yaml", converted.text)])
    assert not again.errors, [d.message for d in again.errors]
    assert not [r for r in again.resources if r.api_version.startswith(("rbac.", "authentication."))]
