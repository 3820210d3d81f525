"""Image references with the verdict Docker gives them: the table the unit test checks the
grammar with, and the integration test checks against a real Docker engine."""

VALID = [
    "ubuntu", "ubuntu:24.04", "library/ubuntu:latest", "docker.io/library/ubuntu:latest",
    "vllm/vllm-openai:v0.11.0", "nvcr.io/nvidia/vllm:25.09-py3", "localhost:5000/app:1",
    "localhost/app", "registry.example.com:443/team/app_x:tag-1.2", "a__b/c.d/e--f:T_9",
    "ollama/ollama@sha256:" + "a" * 64, "app:1@sha256:" + "0" * 64, "MyRegistry.io/app",
    "sparkkit-rehearsal-vllm:latest", "a" * 237, "x.io/" + "a" * 250, "team/" + "a" * 240,
]
INVALID = [
    "--privileged", "-x", "Ubuntu", "library/Ubuntu", "app:", ":tag", "app:-x", "app:.x",
    "app@sha256:abc", "app@sha256:" + "g" * 64, "a/b/", "/a", "a//b", "a..b", "a_", "a-", "_a",
    "app:" + "t" * 129, "a" * 256, "foo:bar/baz", "a b", "app:1:2", "app:1 ", "ап", "a/.b", "[::1]:5000/app:1", "Team/app", "a" * 238, "x.io/" + "a" * 251,
    "host:port/app", "a@b",
]
