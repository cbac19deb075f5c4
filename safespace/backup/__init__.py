"""`safespace backup` and `safespace restore`: one file holding a consistent snapshot of the database.

The file is a gzipped tar archive of two members: `manifest.json` (which database kind, the Alembic
revision, row counts, one sealed sample per encryption key in use) and the database itself (a
SQLite file made with the online backup API, or a `pg_dump` custom-format dump). It holds no key:
encryption.keys and secret.key are backed up apart from the data, so that one stolen file does not
open the comments and stories (P6). Restore checks the data directory's key file against the
backup before it changes anything.

archive.py: the format, the manifest and the key check; take.py: backup; restore.py: restore.
"""

from safespace.backup.archive import FORMAT, BackupError, Manifest, check_key_file, read_manifest, revisions, write_archive
from safespace.backup.restore import restore
from safespace.backup.take import take

__all__ = ["FORMAT", "BackupError", "Manifest", "check_key_file", "read_manifest", "restore", "revisions", "take", "write_archive"]
