"""Remove the image tags of a test namespace (what scripts/test.sh built once for both sessions).

    python -m tests.integration.cleanup NAMESPACE

Only tags under NAMESPACE/ go; an image another tag still names stays.
"""

from __future__ import annotations

import os
import sys

from mortar.engine import connect


def main(namespace: str) -> int:
    if os.environ.get("MORTAR_KEEP_TEST_IMAGES") == "1":
        print(f"kept the image tags of {namespace}/ (MORTAR_KEEP_TEST_IMAGES=1)")
        return 0
    engine = connect()
    removed = 0
    for image in engine.images():
        for ref in image.tags:
            if ref.startswith(f"{namespace}/"):
                engine.untag(ref)
                removed += 1
    print(f"removed {removed} image tag(s) of {namespace}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
