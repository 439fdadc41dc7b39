pytest_plugins = ["suanli_common.testing"]
