"""Change classifier: auto-approves production releases that change neither the model nor the inference stacks.

Lambda code root: lambda_src/change_classifier; handler: change_classifier.handler.handler (see ../README.md).
Modules import each other relatively, so the package also imports as lambda_src.change_classifier.change_classifier.
"""
