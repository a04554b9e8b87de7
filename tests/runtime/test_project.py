from pathlib import Path

import pytest

from sandbox.runtime.project import (
    MeshRecord,
    ProjectNotFound,
    ProxyRecord,
    find_project,
    project_name,
    read_record,
    remove_record,
    write_record,
)


def test_the_compose_file_is_found_from_a_subdirectory_and_istio_sits_beside_it(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    project = find_project(cwd=tmp_path / "src" / "deep")
    assert project.compose_file == (tmp_path / "compose.yaml").resolve()
    assert project.istio_dir == (tmp_path / "istio").resolve()
    assert project.state_dir == tmp_path.resolve() / ".sandbox"


def test_no_compose_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFound, match=str(tmp_path)):
        find_project(cwd=tmp_path)
    with pytest.raises(ProjectNotFound, match="no such compose file"):
        find_project(tmp_path / "missing.yaml")


def test_record_round_trips_and_is_gone_after_remove(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    project = find_project(cwd=tmp_path)
    assert read_record(project) is None
    record = MeshRecord(
        runtime="local",
        project=project.name,
        compose_file=str(project.compose_file),
        istio_dir=str(project.istio_dir),
        control_plane="http://127.0.0.1:15010",
        urls={"ingress": "http://127.0.0.1:8080", "console": None, "prometheus": None, "tracing": None},
        proxies=(ProxyRecord("reviews-v2", "reviews-v2", "default", 0, "http://127.0.0.1:41000"),),
    )
    write_record(project, record)
    assert read_record(project) == record
    remove_record(project)
    assert read_record(project) is None


@pytest.mark.parametrize(
    ("text", "name"), [("Bookinfo", "bookinfo"), ("my app.v2", "myappv2"), ("_x", "x"), ("!!", "sandbox")]
)
def test_project_names_follow_compose(text: str, name: str) -> None:
    assert project_name(text) == name
