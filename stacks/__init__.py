"""hfgate infrastructure: CDK Terrain constructs and their pure, provider-free helpers.

Importing this package (or `stacks.config`, `stacks.facts`, `stacks.contract`, `stacks.naming`) never loads the
Terraform provider bindings: only the construct modules do, so the jobs CLI stays fast.
"""
