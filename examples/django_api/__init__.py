"""A Django REST framework API protected by ``tokensmith.integrations.django``."""
