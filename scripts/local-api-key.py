"""Print the API key of local development, made once and kept in run/api-key (mode 600).

`make up` uses it when API keys are on: a key that still works is reused, otherwise a new one
named local-dev is made. Prints nothing when CATDOG_AUTH=off.
"""

import sys
import time
from pathlib import Path

from client.keys import create_key
from common.settings import get_settings
from common.store import api_keys
from common.store.ops import Store

KEY_FILE = Path("run/api-key")


def main() -> int:
    settings = get_settings()
    if settings.auth == "off":
        return 0
    store = Store.from_url(settings.redis_url)
    if KEY_FILE.exists():
        secret = KEY_FILE.read_text().strip()
        key = store(api_keys.admit(secret, settings.rate_limit_rps, settings.rate_limit_burst)).key
        if key is not None and key.refusal(time.time()) is None:
            print(secret)
            return 0
    secret, _ = create_key(store, "local-dev")
    KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEY_FILE.touch(mode=0o600)
    KEY_FILE.write_text(secret + "\n")
    print(secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
