import pytest


@pytest.mark.django_db
def test_create_member_and_adjust(api_client):
    response = api_client.post("/api/v1/members", {"memberRef": "m-1", "attributes": {"vip_flag": True}}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["memberRef"] == "m-1"
    assert response.json()["attributes"] == {"vip_flag": True}
    response = api_client.post("/api/v1/members/m-1/adjustments", {"points": 100, "reason": "welcome"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["balance"] == 100
    response = api_client.post("/api/v1/members/m-1/adjustments", {"points": -150, "reason": "x"}, format="json")
    assert response.status_code == 422, response.json()
    assert response.json()["errors"][0]["attr"] == "points"
    response = api_client.get("/api/v1/members/m-1/transfers")
    assert response.status_code == 200
    assert [t["points"] for t in response.json()["results"]] == [100]
