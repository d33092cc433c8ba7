"""moto's server mode on 127.0.0.1: AWS's control plane for the deploy guide's commands.

Runs in the AWS CLI's virtualenv (``.venv/aws``, locked in requirements/awscli.txt), not
the app's: moto is never importable where the app's tests run, so nothing of the app or the
cache backend can be tested against it (DynamoDB Local stands in for DynamoDB). Started by
tests/project/test_deploy_guide.py as ``python -m devtools.moto_server --port N``; it
serves until SIGTERM.

Two gaps of moto's in what ``aws cloudformation deploy`` does are filled first, each as
CloudFormation behaves:

- ``deploy`` creates and updates a stack through a change set, and moto computes a
  stack's outputs from the template the stack had when it was made: a stack a change
  set made has none, and an update keeps the old ones. The guide reads the load
  balancer's address, the group's name and the target group from the outputs, so after
  each executed change set they are computed again from the template it applied.
- An update keeps the parameters it does not name (``UsePreviousValue``): their values
  as given, which CloudFormation resolves again. moto keeps them as it resolved them,
  then fails resolving them again: a list (``SubnetIds``) is split a second time, an AMI
  id is looked up as the name of an SSM parameter (``LatestAmiId``). And it takes a
  parameter left at its default before and named now as a change, and updates the
  resources that use it, those a false condition never made included (and fails).
"""

from __future__ import annotations

import argparse
from typing import Any

from moto import server
from moto.cloudformation.models import CloudFormationBackend, Stack
from moto.cloudformation.parsing import ResourceMap


def compute_outputs_after_change_sets() -> None:
    """Wrap moto's ``execute_change_set``: then each stack's outputs are its template's."""
    execute_change_set = CloudFormationBackend.execute_change_set

    def execute_and_compute_outputs(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> None:
        execute_change_set(self, *args, **kwargs)
        for stack in self.stacks.values():
            stack._parse_template()
            stack.output_map = stack._create_output_map()

    CloudFormationBackend.execute_change_set = execute_and_compute_outputs  # type: ignore[method-assign]


def parameters_as_given(resource_map: ResourceMap) -> dict[str, Any]:
    """The stack's parameters as its last create or update gave them, defaults included."""
    slots = resource_map._template.get("Parameters", {})
    defaults = {name: slot["Default"] for name, slot in slots.items() if "Default" in slot}
    return {**defaults, **resource_map.input_parameters}


def keep_previous_values_as_given() -> None:
    """Previous values as given, for ``UsePreviousValue`` and for telling what changed.

    ``Stack.stack_parameters`` is what moto reads for ``UsePreviousValue``;
    ``ResourceMap.update`` compares the new parameters with ``input_parameters``.
    """
    Stack.stack_parameters = property(  # type: ignore[assignment,method-assign]
        lambda stack: parameters_as_given(stack.resource_map)
    )
    update = ResourceMap.update

    def update_from_parameters_as_given(self: ResourceMap, *args: Any, **kwargs: Any) -> None:
        self.input_parameters = parameters_as_given(self)
        update(self, *args, **kwargs)

    ResourceMap.update = update_from_parameters_as_given  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    compute_outputs_after_change_sets()
    keep_previous_values_as_given()
    server.main(["--host", "127.0.0.1", "--port", str(arguments.port)])


if __name__ == "__main__":
    main()
