"""``python examples/django_api/manage.py runserver 127.0.0.1:8002`` or
``... tokensmith_db_upgrade``, from anywhere: the repository root and src/ are put on
``sys.path`` so the example and tokensmith import without installing."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root), str(root / "src")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_api.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
