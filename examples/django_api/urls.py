from django.urls import path

from examples.django_api import views

urlpatterns = [path("api/health", views.health), path("api/me", views.me)]
