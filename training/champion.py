"""Print the registered champion (`catdog@champion -> version N`); exit 1 when there is none.

`make up` uses it to decide whether a model must be trained before serving.
"""

import sys

from training import registry
from training.params import load_params


def main() -> int:
    params = load_params().register_
    version = registry.current_champion(params.model_name, params.alias)
    if version is None:
        print(f"no {params.model_name}@{params.alias} registered", file=sys.stderr)
        return 1
    print(f"{params.model_name}@{params.alias} -> version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
