"""Acceptance: a project that is not this repository uses the `mesh` fixture with only the package
installed (no conftest): a fault test passes under pytest, and a wrong assertion fails with a
report that shows the sidecars' access log lines and proxy-status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from plugin_support import make_project, run_pytest

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SERVICE_TESTS = '''\
"""web calls api: what does web answer when api fails or is slow?"""


def test_web_answers_502_when_api_aborts(mesh):
    with mesh.fault("api", abort=503):
        answer = mesh.request("GET", mesh.url("web"))
    assert answer.status == 502
    assert answer.json()["upstream_status"] == 503


def test_a_delay_on_api_is_felt_from_web(mesh):
    with mesh.fault("api", delay="0.5s"):
        answer = mesh.request("GET", "http://api:9080/", from_="web")
    assert answer.status == 200 and answer.elapsed >= 0.5


def test_a_wrong_expectation(mesh):
    with mesh.fault("api", abort=503):
        answer = mesh.request("GET", mesh.url("web"))
    assert answer.status == 200, answer.text
'''


def test_a_project_uses_the_fixture_and_a_failure_shows_the_access_log(tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", {"test_web.py": SERVICE_TESTS})
    done = run_pytest(project, "-q")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert re.search(r"^1 failed, 2 passed", out.splitlines()[-1]), out
    assert "FAILED test_web.py::test_a_wrong_expectation - AssertionError" in out
    failure = out[out.index("test_a_wrong_expectation ___") :]
    assert "assert 502 == 200" in failure  # pytest's own explanation first
    section = failure[failure.index(" sandbox mesh ") :]
    # the client sidecar's access log: web's call to api, aborted by the fault (Envoy's FI flag)
    web = section[section.index("web sidecar:") :]
    assert re.search(r'\] "GET / HTTP/1\.1" 503 FI .*"api:9080"', web), section
    assert re.search(r"istio-ingressgateway sidecar: \d+ access log line", section), section
    assert "no traffic during the test through: api-v1, api-v2" in section  # the abort kept api out of it
    assert re.search(r"web\.default +web +SYNCED", section), section  # proxy-status
    assert "sandbox mesh" not in out[: out.index("test_a_wrong_expectation ___")]  # only for the failure


def test_the_fixture_is_the_installed_plugin(tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", {"test_web.py": "def test_one(mesh):\n    pass\n"})
    done = run_pytest(project, "-q", "-p", "no:sandbox")  # the entry point's name: nothing else provides it
    assert done.returncode == 1 and "fixture 'mesh' not found" in done.stdout, done.stdout


INERT = """\
import sys


def test_nothing_of_the_mesh_is_loaded():
    assert "sandbox.testing.plugin" in sys.modules  # the plugin is there...
    loaded = [m for m in ("sandbox.testing.lifecycle", "sandbox.runtime", "sandbox.operator") if m in sys.modules]
    assert loaded == []  # ...and costs nothing
"""


def test_a_session_without_the_fixtures_pays_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path / "plain", {"test_plain.py": INERT})
    done = run_pytest(project, "-q")
    assert done.returncode == 0, done.stdout + done.stderr


FUNCTION_SCOPE = '''\
SEEN = []


def test_one(mesh):
    SEEN.append(mesh.ingress)
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - route:
    - destination: {host: api, subset: v2}
""")
    assert mesh.request("GET", "http://api:9080/", from_="web").json()["version"] == "v2"


def test_two(mesh):
    SEEN.append(mesh.ingress)
    assert SEEN[0] != SEEN[1]  # a mesh of its own
    assert "weight: 90" in mesh.get("vs", "api")  # the project's rules, not test_one's
'''


def test_a_function_scoped_mesh_is_fresh_for_each_test(tmp_path: Path) -> None:
    project = make_project(tmp_path / "fresh", {"test_fresh.py": FUNCTION_SCOPE}, "sandbox_scope = function\n")
    done = run_pytest(project, "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_pytest(project, "-q", "--sandbox-scope", "session")  # the command line wins over the ini
    assert done.returncode == 1 and "assert 'http://127" in done.stdout, done.stdout


def test_a_missing_compose_file_is_a_clear_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "lost", {"test_web.py": "def test_one(mesh):\n    pass\n"})
    done = run_pytest(project, "-q", "--sandbox-compose", "nowhere/compose.yaml")
    assert done.returncode == 1
    assert f"sandbox: no compose file {project / 'nowhere' / 'compose.yaml'}" in done.stdout, done.stdout
    assert "--sandbox-compose" in done.stdout


BROKEN_RULE = '''\
import pytest
from sandbox.testing import MeshError


def test_a_refused_rule_names_file_line_and_code(mesh):
    with pytest.raises(MeshError) as refused:
        mesh.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - route:
    - destination: {host: api, subset: v9}
""")
    assert "nothing applied" in str(refused.value)
    assert "<stdin>:9:" in str(refused.value) and "KIA1107" in str(refused.value)
'''


def test_a_refused_rule_is_an_exception_with_the_diagnostics(tmp_path: Path) -> None:
    project = make_project(tmp_path / "broken", {"test_rule.py": BROKEN_RULE})
    done = run_pytest(project, "-q")
    assert done.returncode == 0, done.stdout + done.stderr


def documented(name: str) -> str:
    """The fenced block of docs/testing.md that starts with the comment `# shop/<name>`."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    block = re.search(rf"```\w*\n# shop/{re.escape(name)}\n(.*?)```", text, re.S)
    assert block, name
    return block.group(1)


def test_the_documented_example_passes_as_written(tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", {"test_web.py": documented("test_web.py")})
    (project / "pytest.ini").write_text(documented("pytest.ini"))
    done = run_pytest(project, "-q")
    assert done.returncode == 0 and "5 passed" in done.stdout, done.stdout + done.stderr
