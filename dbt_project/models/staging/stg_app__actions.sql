-- Work-queue actions written by the app (app.sqlite `actions`, copied into the build file); cast only,
-- with the JSON payload fields the queue and the funnel use pulled out.
select
    cast(action_id as bigint) as action_id,
    cast(task_id as varchar) as task_id,
    split_part(cast(task_id as varchar), ':', 1) as task_rule,
    substr(cast(task_id as varchar), length(split_part(cast(task_id as varchar), ':', 1)) + 2) as task_entity_id,
    cast(action as varchar) as action,
    cast(actor as varchar) as actor,
    try_cast(left(replace(cast(acted_at as varchar), 'T', ' '), 19) as timestamp) as acted_at,
    cast(payload as varchar) as payload,
    json_extract_string(try_cast(payload as json), '$.method') as method,
    json_extract_string(try_cast(payload as json), '$.outcome') as outcome,
    -- the appointment a confirm is about: the payload's appointment_id, else the task's entity for
    -- confirm_high_risk:<appointment_id> tasks
    coalesce(
        json_extract_string(try_cast(payload as json), '$.appointment_id'),
        case when split_part(cast(task_id as varchar), ':', 1) = 'confirm_high_risk'
                then substr(cast(task_id as varchar), length('confirm_high_risk') + 2)
        end
    ) as appointment_id,
    try_cast(left(replace(json_extract_string(try_cast(payload as json), '$.until'), 'T', ' '), 19) as timestamp)
        as snooze_until,
    json_extract_string(try_cast(payload as json), '$.reason') as reason,
    json_extract_string(try_cast(payload as json), '$.assignee') as assignee,
    json_extract_string(try_cast(payload as json), '$.note') as note
from {{ source('app_state', 'actions') }}
