"""Give a host its previous whitelist back after a failed rollout (run on the host: python3 -c, stdlib only).

--previous FILE: FILE's bytes, mode and owner replace --dest atomically (a temporary file in the
same directory, renamed over it); FILE stays, as the host's previous list. --none: the host had no
whitelist before, --dest is removed. The restored file's mtime is at least a whole second later
than the failed list's: sqlgrey rereads clients_ip_whitelist.local only when its mtime in whole
seconds grows, so the previous mtime, or one in the same second, would leave the failed list in force.
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time


def restore(previous, dest):
    failed_mtime = os.stat(dest).st_mtime if os.path.exists(dest) else 0.0
    source = os.stat(previous)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".mailguard-restore-")
    try:
        with os.fdopen(handle, "wb") as out, open(previous, "rb") as original:
            shutil.copyfileobj(original, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, source.st_mode & 0o7777)
        os.chown(temporary, source.st_uid, source.st_gid)
        mtime = max(time.time(), math.floor(failed_mtime) + 1)
        os.utime(temporary, (mtime, mtime))
        os.replace(temporary, dest)
    except BaseException:
        os.unlink(temporary)
        raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", required=True)
    before = parser.add_mutually_exclusive_group(required=True)
    before.add_argument("--previous")
    before.add_argument("--none", action="store_true")
    args = parser.parse_args()
    if args.none:
        if os.path.exists(args.dest):
            os.remove(args.dest)
        print(f"removed {args.dest}: the host had no whitelist before")
    else:
        restore(args.previous, args.dest)
        print(f"restored {args.dest} from {args.previous}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
