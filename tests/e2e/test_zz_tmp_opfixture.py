def test_operator_fixture(operator, kubectl):
    assert operator.probe().status == 403
    assert "modelward probe" in operator.probe().message
    assert kubectl("get", "crd", "-o", "name").stdout.count("modelward.io") == 2
