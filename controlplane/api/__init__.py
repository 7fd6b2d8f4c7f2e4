"""The gRPC adapters: servicers, the auth interceptor, status mapping, the
server, and the REST gateway that transcodes the seeds' HTTP paths."""
