from django.test import Client


def test_health_answers_without_touching_the_database() -> None:
    response = Client().get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_root_redirects_to_the_admin() -> None:
    response = Client().get("/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
