"""Drive the official OpenMetadata SDK's own client (``OpenMetadata`` of ``openmetadata-ingestion``)
against a server: the writes whose endpoints moved between the 1.x and 2.x APIs, made as the
SDK's workflows make them.

Runs in the SDK's own environment (``om_sdk.sdk_python()``), never in the project's:

    sdk_client.py URL ENTITIES    (the bot's JWT in OPENMETADATA_JWT_TOKEN)

``ENTITIES`` (JSON) names entities that exist on the server: ``{"table": FQN, "pipeline": FQN,
"task": NAME, "test_case": FQN, "timestamp": MS}``. The client checks the server's version
against its own as the SDK always does, then calls, in this order:

* ``create_or_update_executable_test_suite``: the table's test suite, the request built as
  ``get_or_create_executable_test_suite`` (and the Great Expectations action) build it;
* ``add_pipeline_status``: one status of the pipeline with the task's status (the REST sink);
* ``add_test_case_results``: one result of the test case (the dbt workflow, the REST sink).

It prints ``{"sdk": version, "answers": {method: what the SDK parsed the answer into}}``; an
error of the SDK (a refused request, an answer it cannot parse) ends it with its message.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import warnings

from sdk_validate import load_generated_models_only  # the SDK's package __init__ is not run


def main(url: str, entities_json: str) -> int:
    warnings.simplefilter("ignore")
    load_generated_models_only()
    from metadata.generated.schema.api.tests.createTestSuite import CreateTestSuiteRequest
    from metadata.generated.schema.entity.data.pipeline import PipelineStatus, StatusType, TaskStatus
    from metadata.generated.schema.entity.services.connections.metadata.openMetadataConnection import (
        AuthProvider,
        OpenMetadataConnection,
    )
    from metadata.generated.schema.security.client.openMetadataJWTClientConfig import (
        OpenMetadataJWTClientConfig,
    )
    from metadata.generated.schema.tests.basic import TestCaseResult, TestCaseStatus, TestResultValue
    from metadata.ingestion.ometa.ometa_api import OpenMetadata

    entities = json.loads(entities_json)
    at = entities["timestamp"]
    om = OpenMetadata(
        OpenMetadataConnection(
            hostPort=f"{url}/api",
            authProvider=AuthProvider.openmetadata,
            securityConfig=OpenMetadataJWTClientConfig(jwtToken=os.environ["OPENMETADATA_JWT_TOKEN"]),
        )
    )
    suite = om.create_or_update_executable_test_suite(
        CreateTestSuiteRequest(name=f"{entities['table']}.TestSuite", basicEntityReference=entities["table"])
    )
    pipeline = om.add_pipeline_status(
        fqn=entities["pipeline"],
        status=PipelineStatus(
            timestamp=at,
            executionStatus=StatusType.Successful,
            taskStatus=[TaskStatus(name=entities["task"], executionStatus=StatusType.Successful)],
        ),
    )
    result = om.add_test_case_results(
        TestCaseResult(
            timestamp=at,
            testCaseStatus=TestCaseStatus.Success,
            result="passed (sent by the SDK)",
            testResultValue=[TestResultValue(name="observed_value", value="0")],
        ),
        entities["test_case"],
    )
    answers = {
        "create_or_update_executable_test_suite": suite.basicEntityReference.fullyQualifiedName,
        "add_pipeline_status": pipeline.pipelineStatus.timestamp.root,
        "add_test_case_results": result["timestamp"],
    }
    print(json.dumps({"sdk": importlib.metadata.version("openmetadata-ingestion"), "answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
