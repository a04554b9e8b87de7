"""Whatever shape the legacy YAML has, loading and converting it never raises."""

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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_any_legacy_input_loads_and_converts_without_raising(docs: list[Any]) -> None:
    documents = []
    for (api, kind), name, namespace, spec in docs:
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        documents.append({"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec})
    text = dump_all_yaml(documents)
    loaded = load_texts([("f.yaml", text)])
    converted = convert_texts([("f.yaml", text)])
    if not loaded.errors:  # clean input converts to clean modern YAML
        assert not load_texts([("out.yaml", converted.text)]).errors
