"""What `circleci config process` would refuse, and the schema cannot see: every job, executor,
command and parameter a workflow or step names exists; contexts (and so secrets) reach only
jobs that run on main; images are published under the one namespace the VM pulls from; the
venv cache is keyed on the Python version; a release carries its model version into the
deploy and rollback scripts. The CircleCI CLI cannot be installed here (no GitHub download),
so these are its semantic checks written out; the config uses no orbs."""

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIG: dict[str, Any] = yaml.safe_load((ROOT / ".circleci" / "config.yml").read_text())
TEXT = (ROOT / ".circleci" / "config.yml").read_text()
BUILTIN_STEPS = {
    "checkout", "run", "restore_cache", "save_cache", "store_test_results",
    "store_artifacts", "add_ssh_keys", "when", "unless", "persist_to_workspace",
    "attach_workspace", "setup_remote_docker",
}  # fmt: skip


def workflow_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    """(workflow, job name, its entry) for every job of every workflow."""
    found = []
    for workflow, body in CONFIG["workflows"].items():
        for entry in body["jobs"]:
            job, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            found.append((workflow, job, options or {}))
    return found


def steps_of(steps: list[Any]) -> list[tuple[str, Any]]:
    out = []
    for step in steps:
        name, body = (step, None) if isinstance(step, str) else next(iter(step.items()))
        out.append((name, body))
        if name in ("when", "unless"):
            out += steps_of(body["steps"])
    return out


def test_workflows_name_existing_jobs_and_requirements() -> None:
    for workflow, job, options in workflow_jobs():
        assert job in CONFIG["jobs"], f"{workflow}: no job {job}"
        names = {o.get("name", j) for w, j, o in workflow_jobs() if w == workflow}
        for required in options.get("requires", []):
            assert required in names, f"{workflow}: {job} requires unknown {required}"
        declared = set(CONFIG["jobs"][job].get("parameters", {}))
        passed = set(options) - {"name", "requires", "context", "filters", "serial-group"}
        assert passed <= declared, f"{workflow}: {job} gets undeclared {passed - declared}"


def test_steps_name_existing_commands_and_executors() -> None:
    for job, body in CONFIG["jobs"].items():
        if "executor" in body:
            assert body["executor"] in CONFIG["executors"], job
        for name, _ in steps_of(body["steps"]):
            assert name in BUILTIN_STEPS or name in CONFIG["commands"], f"{job}: step {name}"


def test_every_parameter_used_is_declared() -> None:
    pipeline = set(CONFIG["parameters"])
    for used in re.findall(r"<<\s*pipeline\.parameters\.([\w-]+)\s*>>", TEXT):
        assert used in pipeline, used
    for kind in ("jobs", "commands"):
        for name, body in CONFIG[kind].items():
            text = yaml.safe_dump(body)
            declared = set(body.get("parameters", {}))
            for used in re.findall(r"<<\s*parameters\.([\w-]+)\s*>>", text):
                assert used in declared, f"{kind} {name}: << parameters.{used} >> not declared"


def test_contexts_reach_only_jobs_on_main() -> None:
    for workflow, job, options in workflow_jobs():
        if "context" not in options:
            continue
        only = options.get("filters", {}).get("branches", {}).get("only")
        when = yaml.safe_dump(CONFIG["workflows"][workflow].get("when", {}))
        assert only == "main" or "- main" in when, f"{workflow}: {job} gets a context off main"


def test_images_are_published_under_the_namespace_the_vm_pulls_from() -> None:
    pushes = re.findall(r"docker (?:tag|push) .*", TEXT)
    assert pushes
    for line in pushes:
        assert "DOCKERHUB_USERNAME/" not in line, line
    assert '"$DOCKERHUB_NAMESPACE/$image:$CIRCLE_SHA1"' in TEXT
    env_example = (ROOT / ".env.example").read_text()
    assert "DOCKERHUB_NAMESPACE=" in env_example


def test_the_venv_cache_is_keyed_on_the_python_version() -> None:
    keys = [
        body.get("key") or body.get("keys")
        for job in CONFIG["jobs"].values()
        for name, body in steps_of(job["steps"])
        if name in ("save_cache", "restore_cache")
    ]
    assert keys
    for key in keys:
        for k in key if isinstance(key, list) else [key]:
            assert '{{ checksum "/tmp/python-version" }}' in k, k


def test_a_release_carries_its_model_version_through_deploy_and_rollback() -> None:
    deploy = "\n".join(
        body["command"]
        for name, body in steps_of(CONFIG["jobs"]["deploy"]["steps"])
        if name == "run" and isinstance(body, dict)
    )
    assert "resolve-model.sh" in deploy
    assert "deploy.sh' '$RELEASE_SHA' '$RELEASE_MODEL'" in deploy
    assert "rollback.sh' --from '$RELEASE_SHA' '$RELEASE_MODEL'" in deploy
    # The champion is resolved, and the smoke photos fetched, before the switch.
    steps = [body.get("name", "") for _, body in steps_of(CONFIG["jobs"]["deploy"]["steps"])
             if isinstance(body, dict)]  # fmt: skip
    switch = next(i for i, n in enumerate(steps) if n.startswith("Deploy"))
    assert any(n.startswith("Resolve") for n in steps[:switch])
    assert any(n.startswith("Preflight") for n in steps[:switch])


def test_promotion_redeploys_the_running_code_only_on_demand() -> None:
    promote = CONFIG["workflows"]["promote"]
    assert "promote-model" in yaml.safe_dump(promote["when"])
    assert "promote-model" in yaml.safe_dump(CONFIG["workflows"]["ci"]["when"])
    (_, job, options), *_ = [w for w in workflow_jobs() if w[0] == "promote"]
    assert job == "deploy" and options["code"] == "running"
