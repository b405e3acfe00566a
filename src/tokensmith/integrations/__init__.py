"""Web-framework integrations of the resource-server verifier (``tokensmith.http.resource``).

Each submodule imports its framework, an optional extra: ``tokensmith.integrations.flask``
(``pip install tokensmith[flask]``) and the Django app ``tokensmith.integrations.django``
(``pip install tokensmith[django]``). Importing this package imports neither.
"""
