"""docker-compose.yml, the Dockerfiles, .env.example, the proxy and the deploy scripts agree
with the code: every command names a module (and attribute) that exists, every CATDOG_
variable is a real setting with the same default, every health-check and smoke-test path is
a real gateway route, and each image holds every first-party package its entry points import.

Nothing here needs Docker: the files are parsed and the code is inspected (AST) or imported.
"""

import ast
import functools
import importlib.util
import os
import re
import shlex
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from pydantic import TypeAdapter
from starlette.routing import BaseRoute, Match

from common.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = {"gateway": ROOT / "Dockerfile.gateway", "worker": ROOT / "Dockerfile.worker"}
CI_CONFIG = ROOT / ".circleci" / "config.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
SMOKE_SCRIPT = ROOT / "deploy" / "smoke-test.sh"
DEPLOY_LIB = ROOT / "deploy" / "lib.sh"

# Compose's own variables, read by compose rather than interpolated into the file.
COMPOSE_BUILTIN_VARIABLES = {"COMPOSE_PROFILES"}
# Variables whose compose default differs from the Settings default on purpose.
DELIBERATE_DEFAULTS = {"CATDOG_ENVIRONMENT": "prod"}  # the stack is production; code says dev
# Read by the `catdog` client from its environment, not settings of the service.
CLIENT_VARIABLES = {"CATDOG_API_KEY", "CATDOG_URL"}
# Set by deploy/lib.sh's compose for each release, never by the env file (values as it sets
# them for models:/catdog/7).
RELEASE_VARIABLES = {
    "CATDOG_MODEL_URI": "models:/catdog/7",
    "DEPLOY_CONFIG_DIR": "/opt/catdog/config",
}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; `$${...}` is escaped.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --- reading the files -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            values[match[1]] = match[2]
    return values


def interpolations() -> list[tuple[str, str, str]]:
    """(variable, operator, argument) for every ${...} in docker-compose.yml."""
    return [
        (m[1], m[2] or "", m[3] or "") for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text())
    ]


def compose_defaults() -> dict[str, str]:
    defaults: dict[str, str] = {}
    for name, op, arg in interpolations():
        if op in ("-", ":-"):
            assert defaults.setdefault(name, arg) == arg, f"{name} has two different defaults"
    return defaults


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation, enough for this file: values from `env`, then defaults."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2] or "", match[3] or ""
        if env.get(name):
            return env[name]
        if op in ("-", ":-"):
            return arg
        raise AssertionError(f"${{{name}}} has no value in .env.example and no default")

    return INTERPOLATION.sub(substitute, value).replace("$$", "$")


def argv_of(value: str | list[Any]) -> list[str]:
    """A command as words; the script of `sh -c`, CMD-SHELL and CMD unwrapped."""
    words = shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    if words and words[0] == "CMD":
        words = words[1:]
    if words and words[0] == "CMD-SHELL":
        words = shlex.split(words[1])
    if len(words) >= 3 and words[0] in ("sh", "/bin/sh", "bash") and words[1] == "-c":
        words = shlex.split(words[2])
    return words


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def dockerfile_argvs(path: Path) -> Iterator[tuple[str, list[str]]]:
    for instruction, rest in dockerfile_instructions(path):
        if instruction == "CMD":
            yield "CMD", argv_of(yaml.safe_load(rest))
        elif instruction == "HEALTHCHECK":
            yield "HEALTHCHECK", argv_of(yaml.safe_load(rest.split(" CMD ", 1)[1]))


def all_argvs() -> list[tuple[str, list[str]]]:
    """(where, argv) for every command, entrypoint and health check we ship."""
    found: list[tuple[str, list[str]]] = []
    for name, service in services().items():
        for key in ("entrypoint", "command"):
            if key in service:
                found.append((f"compose {name}.{key}", argv_of(service[key])))
        test = service.get("healthcheck", {}).get("test")
        if test:
            found.append((f"compose {name}.healthcheck", argv_of(test)))
    for image, path in DOCKERFILES.items():
        found += [(f"Dockerfile.{image} {what}", argv) for what, argv in dockerfile_argvs(path)]
    ci = yaml.safe_load(CI_CONFIG.read_text())
    for job_name, job in ci["jobs"].items():
        for step in job["steps"]:
            if isinstance(step, dict) and isinstance(step.get("run"), dict):
                for line in step["run"]["command"].splitlines():
                    if re.search(r"python\S* -m |celery |uvicorn ", line):
                        found.append((f"CI {job_name}", shlex.split(line, comments=True)))
    return found


# --- what the commands name ---------------------------------------------------------------


def entry_points(argv: list[str]) -> Iterator[tuple[str, str, list[str]]]:
    """(kind, target, arguments after it): `module:attr` for uvicorn and celery -A, `module`
    for python -m."""
    for i, word in enumerate(argv):
        rest = argv[i + 1 :]
        if word == "uvicorn" and rest:
            yield "app", rest[0], rest[1:]
        elif word == "celery" and len(rest) >= 2 and rest[0] in ("-A", "--app"):
            yield "app", rest[1], rest[2:]
        elif (
            re.fullmatch(r"(.*/)?python3?(\.\d+)?", word)
            and rest[:1] == ["-m"]
            and len(rest) > 1
            and rest[1] not in ("celery", "uvicorn", "pytest", "pip")
        ):
            yield "module", rest[1], rest[2:]


ENTRY_POINTS = sorted(
    {
        (where, kind, target, tuple(args))
        for where, argv in all_argvs()
        for kind, target, args in entry_points(argv)
    }
)


def top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_sources(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"module {module} does not exist"
    if spec.submodule_search_locations:
        return sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py"))
    return [Path(spec.origin)]


def test_entry_points_were_found() -> None:
    targets = {target for _, _, target, _ in ENTRY_POINTS}
    assert {"gateway", "worker.celery_app:app", "worker.healthcheck", "client"} <= targets


@pytest.mark.parametrize(
    ("where", "kind", "target", "args"), ENTRY_POINTS, ids=[f"{e[0]}: {e[2]}" for e in ENTRY_POINTS]
)
def test_every_command_names_code_that_exists(
    where: str, kind: str, target: str, args: tuple[str, ...]
) -> None:
    if kind == "app":
        module, _, attr = target.partition(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, f"{where}: module {module} does not exist"
        assert attr in top_level_names(Path(spec.origin)), f"{where}: {module} defines no {attr}"
        return
    spec = importlib.util.find_spec(target)
    assert spec is not None, f"{where}: python -m {target}: no such module"
    if spec.submodule_search_locations:
        assert importlib.util.find_spec(f"{target}.__main__"), f"{where}: {target} has no __main__"
    # Sub-commands and options the command passes must be spelled somewhere in its source
    # (argparse declares them as strings), so a renamed flag breaks this test, not a deploy.
    source = "\n".join(p.read_text() for p in module_sources(target))
    words = [
        a.split("=")[0]
        for a in args
        if (a.startswith("--") or re.fullmatch(r"[a-z][a-z-]+", a)) and a != "--help"
    ]
    missing = [w for w in words if w not in source]
    assert not missing, f"{where}: python -m {target} does not know {missing}"


# --- CATDOG_ variables ----------------------------------------------------------------------


def catdog_variables() -> set[str]:
    text = COMPOSE_FILE.read_text() + ENV_EXAMPLE.read_text()
    return set(re.findall(r"\b(CATDOG_[A-Z0-9_]+)", text))


def field_name(variable: str) -> str:
    return variable.removeprefix("CATDOG_").lower()


def test_every_catdog_variable_is_a_setting() -> None:
    variables = catdog_variables()
    assert "CATDOG_REDIS_URL" in variables and "CATDOG_MODEL_URI" in variables
    unknown = sorted(
        v for v in variables - CLIENT_VARIABLES if field_name(v) not in Settings.model_fields
    )
    assert not unknown, f"not fields of common.settings.Settings: {unknown}"
    client_code = (ROOT / "client" / "cli.py").read_text()
    assert all(f'"{v}"' in client_code for v in CLIENT_VARIABLES & variables)


def test_compose_defaults_equal_the_settings_defaults() -> None:
    for variable, default in compose_defaults().items():
        if not variable.startswith("CATDOG_") or variable in {
            *DELIBERATE_DEFAULTS,
            *CLIENT_VARIABLES,
        }:
            continue
        field = Settings.model_fields[field_name(variable)]
        parsed = TypeAdapter(field.annotation).validate_strings(default)
        assert parsed == field.default, (
            f"{variable}: compose says {default!r}, code {field.default!r}"
        )
    for variable, value in DELIBERATE_DEFAULTS.items():
        assert compose_defaults()[variable] == value


def test_env_example_lists_every_variable_with_the_compose_defaults() -> None:
    example = env_example()
    used = {name for name, _, _ in interpolations()}
    missing = used - example.keys() - set(RELEASE_VARIABLES)
    assert sorted(missing) == [], "variables missing from .env.example"
    unused = example.keys() - used - COMPOSE_BUILTIN_VARIABLES
    assert sorted(unused) == [], "variables in .env.example that compose never reads"
    for variable, default in compose_defaults().items():
        if variable not in RELEASE_VARIABLES:
            assert example[variable] == default, (
                f".env.example shows {variable}={example[variable]}"
            )


def test_release_variables_are_set_by_deploy_and_by_no_env_file() -> None:
    # A release's model version and configuration folder come from deploy/lib.sh's compose
    # (one release, one model): a line in the env file would pin every release to one.
    assert sorted(RELEASE_VARIABLES.keys() & env_example().keys()) == []
    assert {name for name, _, _ in interpolations()} >= RELEASE_VARIABLES.keys()
    lib = DEPLOY_LIB.read_text()
    compose_function = lib[
        lib.index("\ncompose() {") : lib.index("\n}", lib.index("\ncompose() {"))
    ]
    for variable in RELEASE_VARIABLES:
        assert f"{variable}=" in compose_function, f"deploy/lib.sh's compose sets no {variable}"
    assert 'CATDOG_MODEL_URI="models:/$MODEL_NAME/$version"' in compose_function
    # The model it names is the one the code registers and the champion alias points into.
    model_name = re.search(r'^MODEL_NAME="\$\{MODEL_NAME:-(\w+)\}"', lib, re.M)
    assert model_name, "deploy/lib.sh sets no MODEL_NAME default"
    assert model_name[1] == Settings.model_fields["registered_model_name"].default


def test_the_model_uri_is_required_not_defaulted() -> None:
    # Without CATDOG_MODEL_URI compose refuses to start: no silent fallback to an alias.
    model_uri = [(op, arg) for name, op, arg in interpolations() if name == "CATDOG_MODEL_URI"]
    assert model_uri and all(op == ":?" for op, _ in model_uri), model_uri


def _filled_env_example() -> dict[str, str]:
    """.env.example as an operator fills it in: every "change-me" replaced by a real value,
    and the release's variables as deploy/lib.sh sets them."""
    filled = {
        k: v.replace("change-me", "s3cr3t-0123456789abcdef") for k, v in env_example().items()
    }
    return {**filled, **RELEASE_VARIABLES}


def _placeholder_env_example() -> dict[str, str]:
    """.env.example as shipped, placeholders and all, deployed as a release."""
    return {**env_example(), **RELEASE_VARIABLES}


def _service_settings(
    service: str, values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    environment = interpolate(services()[service]["environment"], values)
    for name in [n for n in os.environ if n.startswith(("CATDOG_", "FLOWER_"))]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    return Settings(_env_file=None)  # type: ignore[call-arg]


# --- secrets, service by service -------------------------------------------------------------

# The secrets of the env file, and per service the environment variables that carry one of
# them (value: the env-file secret it is made from). Every service of the compose file is
# listed: a new one has to say what it holds.
ENV_FILE_SECRETS = {
    "REDIS_PASSWORD",
    "CATDOG_CALLBACK_SECRET",
    "CATDOG_FLOWER_BASIC_AUTH",
    "GRAFANA_ADMIN_PASSWORD",
}
WORKER_SECRETS = {
    "CATDOG_REDIS_URL": "REDIS_PASSWORD",
    "CATDOG_CALLBACK_SECRET": "CATDOG_CALLBACK_SECRET",
}
SECRETS_HELD = {
    "redis": {"REDIS_PASSWORD": "REDIS_PASSWORD", "REDISCLI_AUTH": "REDIS_PASSWORD"},
    "gateway": {"CATDOG_REDIS_URL": "REDIS_PASSWORD"},
    "worker-realtime": WORKER_SECRETS,
    "worker": WORKER_SECRETS,
    "worker-gpu": WORKER_SECRETS,
    "flower": {
        "CATDOG_REDIS_URL": "REDIS_PASSWORD",
        "FLOWER_BASIC_AUTH": "CATDOG_FLOWER_BASIC_AUTH",
    },
    "mlflow": {},
    "prometheus": {},
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD": "GRAFANA_ADMIN_PASSWORD"},
    "proxy": {},
    "evaluate": {},
}
# The services whose processes build common.settings.Settings from their environment.
SETTINGS_SERVICES = ["gateway", "worker-realtime", "worker", "worker-gpu", "flower", "evaluate"]
# What the placeholder of each secret makes a service's settings refuse.
REFUSED_SETTING = {
    "REDIS_PASSWORD": "CATDOG_REDIS_URL",
    "CATDOG_CALLBACK_SECRET": "CATDOG_CALLBACK_SECRET",
    "CATDOG_FLOWER_BASIC_AUTH": "CATDOG_FLOWER_BASIC_AUTH",
}


def secrets_interpolated(value: Any) -> set[str]:
    return {m[1] for m in INTERPOLATION.finditer(str(value))} & ENV_FILE_SECRETS


def test_each_service_receives_only_the_secrets_it_uses() -> None:
    assert sorted(services()) == sorted(SECRETS_HELD)
    for name, service in services().items():
        environment = service.get("environment", {})
        held = {
            variable: secret
            for variable, value in environment.items()
            for secret in secrets_interpolated(value)
        }
        assert held == SECRETS_HELD[name], f"{name} holds {held}"
        # Nowhere else in its definition either (command, healthcheck, labels...).
        elsewhere = {k: v for k, v in service.items() if k != "environment"}
        assert secrets_interpolated(elsewhere) == set(), f"{name}: a secret outside environment"
        # A CATDOG_ secret is a settings field the production validator checks.
        for variable in held:
            if variable.startswith("CATDOG_"):
                assert field_name(variable) in SECRET_FIELDS, variable
    # The shared settings hold none: each service adds its own.
    assert secrets_interpolated(compose()["x-catdog-env"]) == set()


@pytest.mark.parametrize("service", SETTINGS_SERVICES)
def test_settings_build_from_each_service_environment(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled = _filled_env_example()
    settings = _service_settings(service, filled, monkeypatch)
    # Production settings validate (real secrets), every URL points at a service of this
    # compose file, and the model is the release's version.
    assert settings.environment == "prod"
    assert settings.model_uri == RELEASE_VARIABLES["CATDOG_MODEL_URI"]
    assert urlsplit(settings.mlflow_tracking_uri).hostname in services()
    if "CATDOG_REDIS_URL" in SECRETS_HELD[service]:
        assert urlsplit(settings.redis_url).hostname in services()
        assert urlsplit(settings.redis_url).password == filled["REDIS_PASSWORD"]
    else:
        assert "redis_url" not in settings.model_fields_set
    if "CATDOG_CALLBACK_SECRET" in SECRETS_HELD[service]:
        settings.require_secrets("callback_secret")  # what a worker checks at start
        assert settings.callback_secret.get_secret_value() == filled["CATDOG_CALLBACK_SECRET"]
    else:
        with pytest.raises(ValueError, match="CATDOG_CALLBACK_SECRET must be set"):
            settings.require_secrets("callback_secret")


@pytest.mark.parametrize(
    "service",
    [s for s in SETTINGS_SERVICES if set(SECRETS_HELD[s].values()) & REFUSED_SETTING.keys()],
)
def test_production_refuses_the_placeholders_of_env_example(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="must be set to a real secret in production"):
        _service_settings(service, _placeholder_env_example(), monkeypatch)


def test_a_service_without_secrets_starts_on_the_env_example_as_shipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The evaluation holds no secret, so no placeholder can stop it (nor leak into it).
    settings = _service_settings("evaluate", _placeholder_env_example(), monkeypatch)
    assert settings.model_fields_set & SECRET_FIELDS == set()


SECRET_USERS = [
    (secret, service)
    for service in SETTINGS_SERVICES
    for secret in sorted(set(SECRETS_HELD[service].values()))
]


@pytest.mark.parametrize(
    ("secret", "service"), SECRET_USERS, ids=[f"{a}-{b}" for a, b in SECRET_USERS]
)
def test_each_placeholder_alone_is_refused_by_each_service_that_receives_it(
    secret: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {**_filled_env_example(), secret: env_example()[secret]}
    with pytest.raises(ValueError, match=f"{REFUSED_SETTING[secret]} must be set to a real secret"):
        _service_settings(service, values, monkeypatch)


def test_every_secret_of_the_env_file_is_checked_somewhere() -> None:
    # Grafana checks its own admin password; every other secret is refused by the settings of
    # at least one service that receives it.
    assert {secret for secret, _ in SECRET_USERS} == set(REFUSED_SETTING)
    assert set(REFUSED_SETTING) | {"GRAFANA_ADMIN_PASSWORD"} == ENV_FILE_SECRETS


# --- routes ----------------------------------------------------------------------------------


def gateway_routes() -> list[BaseRoute]:
    """The routes of the app uvicorn serves, built by the factory (no connection opens)."""
    from gateway.app import create_app

    app = create_app(Settings(_env_file=None), configure_logs=False)  # type: ignore[call-arg]
    return list(app.router.routes)


def urls_in(argv: list[str]) -> list[str]:
    return [m for word in argv for m in re.findall(r"https?://[^\s'\"]+", word)]


def gateway_requests() -> list[tuple[str, str, str]]:
    """(where, method, path) of every request our configuration makes to the gateway."""
    found: list[tuple[str, str, str]] = []
    for name, service in services().items():
        test = service.get("healthcheck", {}).get("test")
        image = str(service.get("image", ""))
        # The gateway's own check, and the proxy's (it forwards `/` to the gateway).
        if test and ("catdog-gateway" in image or name == "proxy"):
            found += [(f"compose {name}", "GET", urlsplit(u).path) for u in urls_in(argv_of(test))]
    for _, argv in dockerfile_argvs(DOCKERFILES["gateway"]):
        found += [("Dockerfile.gateway", "GET", urlsplit(u).path) for u in urls_in(argv)]
    for method, path in re.findall(
        r"request (GET|POST|DELETE) \"?(/[^\s\"]*)", SMOKE_SCRIPT.read_text()
    ):
        found.append(("smoke-test.sh", method, re.sub(r"\$\w+", "x", path)))
    for path in re.findall(r"/(readyz|livez)\b", DEPLOY_LIB.read_text()):
        found.append(("deploy/lib.sh", "GET", f"/{path}"))
    return sorted(set(found))


def test_gateway_requests_were_found() -> None:
    paths = {(method, path) for _, method, path in gateway_requests()}
    assert {("GET", "/livez"), ("GET", "/readyz"), ("POST", "/predict"), ("POST", "/jobs")} <= paths


@pytest.mark.parametrize(
    ("where", "method", "path"),
    gateway_requests(),
    ids=[f"{w} {m} {p}" for w, m, p in gateway_requests()],
)
def test_every_checked_path_is_a_gateway_route(where: str, method: str, path: str) -> None:
    # Route.matches is Starlette's own dispatch test: FULL means path and method match.
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    verdicts = [route.matches(scope)[0] for route in gateway_routes()]
    assert Match.FULL in verdicts, f"{where}: {method} {path} is not a route of the gateway"


# --- images hold what their entry points import -------------------------------------------------

FIRST_PARTY = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())


def first_party_imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found & set(FIRST_PARTY)


def closure(packages: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = set(packages)
    while todo:
        package = todo.pop()
        seen.add(package)
        todo |= first_party_imports(package) - seen
    return seen


def copied_packages(dockerfile: Path) -> set[str]:
    return {
        rest.split()[0].rstrip("/")
        for instruction, rest in dockerfile_instructions(dockerfile)
        if instruction == "COPY" and not rest.startswith("--from") and rest.split()[0].endswith("/")
    }


def entry_packages(image: str) -> set[str]:
    """Top-level packages that the commands run in `image` start from."""
    argvs = [argv for where, argv in all_argvs() if where.startswith(f"Dockerfile.{image} ")]
    for service in services().values():
        if f"catdog-{image}:" in str(service.get("image", "")):
            argvs += [argv_of(service[k]) for k in ("command", "entrypoint") if k in service]
            if service.get("healthcheck", {}).get("test"):
                argvs.append(argv_of(service["healthcheck"]["test"]))
    return {t.split(":")[0].split(".")[0] for argv in argvs for _, t, _ in entry_points(argv)}


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_each_image_holds_every_package_its_entry_points_import(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    copied = copied_packages(dockerfile)
    entries = entry_packages(image)
    assert entries, f"no entry point runs in the {image} image"
    missing_entries = entries - set(FIRST_PARTY)
    assert not missing_entries, f"entry points of missing packages: {missing_entries}"
    needed = closure(entries)
    assert needed <= copied, f"{dockerfile.name} lacks {sorted(needed - copied)}"
    allowed = set(re.findall(r"^!(\w+)/$", (ROOT / ".dockerignore").read_text(), re.M))
    assert copied <= allowed, f".dockerignore keeps out {sorted(copied - allowed)}"


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def optional_imports(tree: ast.AST) -> set[ast.AST]:
    """Import statements inside `try: ... except ImportError`: the code copes without them."""
    guarded: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            guarded |= {n for stmt in node.body for n in ast.walk(stmt)}
    return guarded


def imports_of_module(module: str, path: Path) -> set[str]:
    """Absolute names of everything `module` imports, anywhere in the file, except optional
    imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    optional = optional_imports(tree)
    for node in ast.walk(tree):
        if node in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # may be submodules
    return found


def third_party_imports(packages: set[str]) -> set[str]:
    """Top-level third-party names imported by every module of `packages` and, module by
    module, by the first-party code they import (not whole packages: the gateway uses
    common.imaging, not common.ml.model and its torch)."""
    todo = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in packages
        for p in (ROOT / package).rglob("*.py")
    ]
    seen: set[str] = set()
    third_party: set[str] = set()
    while todo:
        module = todo.pop()
        path = module_path(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parents run first
        for name in imports_of_module(module, path):
            top = name.split(".")[0]
            if top in FIRST_PARTY:
                todo.append(name)
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    return third_party


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_requirements(image: str) -> list[Requirement]:
    """What the Dockerfile installs: its requirement files (with their -r includes), and
    from training.txt only the names its grep pattern picks."""
    text = DOCKERFILES[image].read_text()
    files = set(re.findall(r"-r /tmp/requirements/(\w+)\.txt", text))
    picked = re.findall(r"grep -E '\^\(([^)]*)\)==' /tmp/requirements/(\w+)\.txt", text)
    requirements: list[Requirement] = []

    def read(name: str, only: set[str] | None) -> None:
        for line in (ROOT / "requirements" / f"{name}.txt").read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("-r "):
                read(line.split()[1].removesuffix(".txt"), only)
            elif line and (only is None or normalise(Requirement(line).name) in only):
                requirements.append(Requirement(line))

    for name in files & {"gateway", "worker"}:
        read(name, None)
    for names, name in picked:
        read(name, {normalise(n) for n in names.split("|")})
    return requirements


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Distributions those requirements install, following installed metadata and extras."""
    seen: dict[str, set[str]] = {}
    todo = [(normalise(r.name), set(r.extras)) for r in requirements]
    while todo:
        name, extras = todo.pop()
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in seen[name] or {""}):
                todo.append((normalise(requirement.name), set(requirement.extras)))
    return set(seen)


@functools.cache
def import_names_to_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_each_image_installs_every_library_its_code_imports(image: str) -> None:
    installed = installed_closure(image_requirements(image))
    distributions = import_names_to_distributions()
    missing = {
        name: sorted(distributions.get(name, ["?"]))
        for name in third_party_imports(entry_packages(image))
        if not {normalise(d) for d in distributions.get(name, [])} & installed
    }
    assert not missing, f"Dockerfile.{image} does not install what its code imports: {missing}"


def test_gateway_image_copies_no_worker_or_training_code() -> None:
    # The gateway image has no torch; code that needs it must not be in it either.
    assert copied_packages(DOCKERFILES["gateway"]) == {"common", "gateway"}


# --- the proxy -------------------------------------------------------------------------------


def test_proxy_accepts_the_largest_job_the_gateway_accepts() -> None:
    match = re.search(r"client_max_body_size\s+(\d+)([kmg]?);", NGINX_CONF.read_text())
    assert match, "deploy/nginx/nginx.conf sets no client_max_body_size"
    limit = int(match[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2]]
    assert limit >= Settings.model_fields["max_job_bytes"].default


def test_proxy_upstreams_are_compose_services_on_their_ports() -> None:
    upstreams = re.findall(r"http://([a-z-]+):(\d+)", NGINX_CONF.read_text())
    assert {host for host, _ in upstreams} >= {"gateway", "flower", "grafana"}
    for host, port in upstreams:
        service = services()[host]
        declared = " ".join(str(x) for x in service.get("expose", []) + service.get("ports", []))
        assert port in declared or f"--port={port}" in str(service.get("command")), (host, port)


def volume_mount(volume: str) -> tuple[str, str]:
    """(source, target) of a short-syntax volume; the source may hold `${VAR:-default}`."""
    parts = volume.rsplit(":", 2 if volume.endswith((":ro", ":rw")) else 1)
    return parts[0], parts[1]


def test_proxy_container_matches_its_nginx_config() -> None:
    # What compose publishes, mounts and health-checks is what nginx.conf listens on and reads.
    proxy = services()["proxy"]
    conf = NGINX_CONF.read_text()
    listens = set(re.findall(r"^\s*listen\s+([^\s;]+)", conf, re.M))
    assert listens == {"8080", "8443", "127.0.0.1:8081"}
    published = {str(p).rsplit(":", 1)[1] for p in proxy["ports"]}
    assert published == {"8080", "8443"}  # 8081 is the container's own health check
    assert "http://127.0.0.1:8081/livez" in argv_of(proxy["healthcheck"]["test"])
    assert re.search(r"listen 8443 ssl\b", conf)
    mounts = dict(volume_mount(v)[::-1] for v in proxy["volumes"])
    command = argv_of(proxy["command"])
    config_file = command[command.index("-c") + 1]
    assert mounts[str(Path(config_file).parent)] == "${DEPLOY_CONFIG_DIR:-./deploy}/nginx"
    for path in re.findall(r"ssl_certificate(?:_key)?\s+([^;]+);", conf):
        assert str(Path(path).parent) in mounts, f"{path} is not mounted"
        assert Path(path).name in ("fullchain.pem", "privkey.pem")  # what deploy/tls.sh writes
    (acme_root,) = re.findall(r"location /\.well-known/acme-challenge/ \{\s*root ([^;]+);", conf)
    assert mounts[acme_root] == "${ACME_WEBROOT:-/opt/catdog/acme}"
    included = re.findall(r"^\s*include\s+([^;]+);", conf, re.M)
    assert included and all((NGINX_CONF.parent / name).is_file() for name in included)


def test_prometheus_targets_are_compose_services_on_exposed_ports() -> None:
    # deploy/prometheus.yml is monitoring's; this checks that the stack serves what it scrapes.
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets: list[tuple[str, str]] = []
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets += [(name, str(sd["port"])) for name in sd["names"]]
        for static in job.get("static_configs", []):
            targets += [tuple(t.rsplit(":", 1)) for t in static["targets"]]  # type: ignore[misc]
    assert targets
    for host, port in targets:
        if host == "localhost":
            continue
        service = services()[host]
        exposed = [
            str(p).split(":")[-1] for p in service.get("expose", []) + service.get("ports", [])
        ]
        assert port in exposed, f"Prometheus scrapes {host}:{port}, which compose does not expose"


def test_mlflow_server_runs_the_mlflow_version_the_code_uses() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements" / "worker.txt").read_text().splitlines()
        if "==" in line
    )
    image = services()["mlflow"]["image"]
    assert image == f"ghcr.io/mlflow/mlflow:v{pins['mlflow']}"


def test_callbacks_refuse_every_compose_service_name() -> None:
    refused = set(Settings(_env_file=None).callback_refused_hosts)  # type: ignore[call-arg]
    assert set(services()) - refused == set()
