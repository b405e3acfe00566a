"""Django REST framework: bearer tokens over ``BearerGuard`` (extra ``tokensmith[django]``).

Add ``"tokensmith.integrations.django"`` to ``INSTALLED_APPS`` and configure
``settings.TOKENSMITH`` (``conf.py``); then use ``authentication.BearerTokenAuthentication``
and ``permissions.HasScope("read")`` on views, and ``manage.py tokensmith_db_upgrade``
to migrate a local issuer's database.
"""
