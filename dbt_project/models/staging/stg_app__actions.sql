-- Work-queue actions written by the app (app.sqlite `actions`, copied into the build file); cast only,
-- with the JSON payload fields the queue and the funnel use pulled out. acted_at is UTC (the app writes UTC ISO
-- times): marts that set it beside the exports' clinic-local times convert it first (utc_to_local).
select
    cast(action_id as bigint) as action_id,
    cast(task_id as string) as task_id,
    split_part(cast(task_id as string), ':', 1) as task_rule,
    substr(cast(task_id as string), length(split_part(cast(task_id as string), ':', 1)) + 2) as task_entity_id,
    cast(action as string) as action,
    cast(actor as string) as actor,
    try_cast(left(replace(cast(acted_at as string), 'T', ' '), 19) as timestamp) as acted_at,
    cast(payload as string) as payload,
    {{ json_text('payload', '$.method') }} as method,
    {{ json_text('payload', '$.outcome') }} as outcome,
    -- the appointment a confirm is about: the payload's appointment_id, else the task's entity for
    -- confirm_high_risk:<appointment_id> tasks
    coalesce(
        {{ json_text('payload', '$.appointment_id') }},
        case when split_part(cast(task_id as string), ':', 1) = 'confirm_high_risk'
                then substr(cast(task_id as string), length('confirm_high_risk') + 2)
        end
    ) as appointment_id,
    try_cast(left(replace({{ json_text('payload', '$.until') }}, 'T', ' '), 19) as timestamp)
        as snooze_until,
    {{ json_text('payload', '$.reason') }} as reason,
    {{ json_text('payload', '$.assignee') }} as assignee,
    {{ json_text('payload', '$.note') }} as note
from {{ source('app_state', 'actions') }}
