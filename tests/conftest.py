pytest_plugins = ["tests.harness.plugin", "tests.controlplane_fixtures"]
