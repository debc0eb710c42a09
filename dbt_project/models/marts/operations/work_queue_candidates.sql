-- One row per open work-queue task (task_id = 'rule:entity_id', stable across builds; never a patient id: the
-- per-patient KX rule uses the keyed patient_key, re-keyed in app actions by `ptpulse secret rotate`), with a reason a
-- person can act on, a priority (1 = most urgent) and a due time, from every queue rule
-- (seeds/work_queue_rules.csv) except the no-show-risk one (the ML step writes it as ml.work_queue_tasks).
-- created_at is when the task's condition began (its occurrence), stable from build to build while the condition
-- lasts; a condition that ends and arises again (the booked visit was attended and nothing is next, a second
-- evaluation no-show) is a new occurrence with a later created_at under the same task_id.
-- App actions are applied by the one rule the app folds them with (app/lib/actions.py fold, docs/interfaces.md
-- section 4):
--   1. an action taken in the Work queue names the occurrence it was taken on (payload `occurrence`, the task's
--      created_at then); once the task's created_at is later (a new occurrence), that action and every earlier
--      one are history only: the task is a fresh open one;
--   2. of the remaining actions, the first that closes the task (mark_lost; a confirm or an outreach whose outcome
--      closes it, as the app folds it) closes it for good: the task is not here, and a later row (a queued
--      message's write-back) does not reopen it;
--   3. otherwise the latest action decides: a snooze moves due_at to its end (a later action, or a re-snooze to an
--      earlier day, replaces it).
-- Claims and assignments are shown; an outreach logged on a referral task counts as first contact (through
-- referral_funnel).
-- Windows (a daily queue holds current items only; each rule's is stated in its reason or below):
--   referral rules 1-3: referrals received in the last queue_lookback_days;
--   episode rules 4-7: active episodes only (a visit or booking within self_discharge_days, else the episode is
--     self-discharged); authorizations that ended at most 7 days ago; KX: the current calendar year;
--   rule 9: notes created in the last unsigned_note_lookback_days (older unsigned notes are a compliance
--     report, intermediate.int_notes_unsigned, not the daily queue).
with k as (
    select
        as_of,
        cast(as_of as date) as as_of_date
    from {{ ref('int_clocks_resolved') }}
),

f as (
    select
        f.*,
        z.timezone as clinic_timezone
    from {{ ref('referral_funnel') }} as f
    cross join k
    left join {{ ref('stg_raw__clinics') }} as z on f.clinic_id = z.clinic_id
    where f.received_at >= k.as_of - {{ days_interval(var('queue_lookback_days')) }}
),

future as (
    select
        episode_id,
        scheduled_start
    from {{ ref('appointments') }}
    where is_future
),

-- when an episode's bookings last went down: the latest time one of its appointments stopped being ahead (attended,
-- missed, or cancelled). An episode rule's condition (nothing booked, fewer booked than the plan needs) can only
-- begin then, so it is the start of the rule's occurrence (created_at)
booking_ends as (
    select
        episode_id,
        max(
            case when status in ('cancelled', 'late_cancelled') then coalesce(status_at, scheduled_start)
                else scheduled_start
            end
        ) as last_booking_end_at
    from {{ ref('appointments') }}
    where not is_future and episode_id is not null
    group by episode_id
),

active as (
    select
        e.*,
        coalesce(b.last_booking_end_at, e.last_visit_at, cast(e.eval_date as timestamp)) as occurrence_at
    from {{ ref('episodes') }} as e
    left join booking_ends as b using (episode_id)
    where e.status = 'active'
),

tasks as (
    -- 1. uncontacted referrals past the contact SLA
    select
        'uncontacted_referral' as rule,
        f.referral_id as entity_id,
        null as queue_unused,
        f.clinic_id,
        f.patient_id,
        f.referral_id,
        f.episode_id,
        null as appointment_id,
        -- 'physician_referral' reads 'New physician referral received', not '... referral referral ...'
        'New ' || replace(replace(coalesce(f.source_channel, 'unknown'), '_referral', ''), '_', ' ')
        || ' referral received '
        || {{ format_ts('f.received_at', '%Y-%m-%d %H:%M') }} || ', not contacted after '
        || cast(round({{ hours_between('f.received_at', 'k.as_of', 'f.clinic_timezone') }}) as bigint) || ' h'
        || case when f.outreach_attempts > 0 then ' (' || f.outreach_attempts || ' outreach attempts, nobody reached)'
            else ''
        end || ': call the patient.' as reason,
        false as is_escalated,
        f.received_at + {{ hours_interval(var('contact_sla_hours')) }} as due_at,
        f.received_at as created_at
    from f, k
    -- not contacted = nobody reached yet (docs/interfaces.md): a voicemail or no answer is an attempt only
    where f.contacted_at is null and f.exit_stage is null and f.scheduled_at is null
        and f.evaluated_at is null
        and f.received_at + {{ hours_interval(var('contact_sla_hours')) }} <= k.as_of
    union all
    -- 2. contacted but not scheduled
    select
        'contacted_unscheduled',
        f.referral_id,
        null,
        f.clinic_id,
        f.patient_id,
        f.referral_id,
        f.episode_id,
        null,
        'Reached ' || {{ format_ts('f.contacted_at', '%Y-%m-%d') }} || ' (' || f.outreach_attempts
        || ' outreach attempts) but no evaluation booked ' || {{ var('schedule_sla_hours') }}
        || ' h later (referral of the last ' || {{ var('queue_lookback_days') }} || ' days): offer a time.',
        false,
        f.contacted_at + {{ hours_interval(var('schedule_sla_hours')) }},
        f.contacted_at
    from f, k
    -- contact = a person was reached (not a voicemail); due once the schedule SLA has passed since then
    where f.contacted_at is not null and f.scheduled_at is null and f.exit_stage is null
        and f.evaluated_at is null
        and f.contacted_at + {{ hours_interval(var('schedule_sla_hours')) }} <= k.as_of
    union all
    -- 3. evaluation no-shows to rebook
    select
        'eval_no_show_rebook',
        f.referral_id,
        null,
        f.clinic_id,
        f.patient_id,
        f.referral_id,
        f.episode_id,
        null,
        'Missed the initial evaluation on ' || {{ format_ts('f.exit_at', '%Y-%m-%d %H:%M') }}
        || ' (referral of the last '
        || {{ var('queue_lookback_days') }} || ' days): call to rebook.',
        false,
        f.exit_at + interval 24 hour,
        f.exit_at
    from f
    left join {{ ref('int_referrals_pivoted') }} as ip using (referral_id)
    -- an intake exit recorded after the no-show (lost, declined on the rebooking call) closed it already
    where f.exit_stage = 'eval_no_show' and ip.intake_exit_stage is null
    union all
    -- 4. active patients with no future appointment
    select
        'active_no_future_appt',
        e.episode_id,
        null,
        e.clinic_id,
        e.patient_id,
        e.referral_id,
        e.episode_id,
        null,
        'Active patient (' || e.attended_visits || coalesce(' of ' || e.planned_visits, '')
        || ' visits) with nothing booked since the visit on '
        || coalesce({{ format_ts('e.last_visit_at', '%Y-%m-%d') }}, '?')
        || ': book the next visit.',
        false,
        coalesce(e.last_visit_at, cast(e.eval_date as timestamp)) + interval 48 hour,
        e.occurrence_at
    from active as e
    where e.future_appointments = 0
    union all
    -- 5. booked below the plan-of-care frequency
    select
        'below_poc_frequency',
        e.episode_id,
        null,
        e.clinic_id,
        e.patient_id,
        e.referral_id,
        e.episode_id,
        null,
        'Plan of care is ' || e.frequency_per_week || 'x/week but only ' || b.booked || ' visit(s) booked in the next '
        || {{ var('poc_lookahead_days') }} || ' days (' || b.needed || ' needed): book the rest.',
        false,
        k.as_of + interval 1 day,
        e.occurrence_at
    from active as e
    cross join k
    inner join (
        select
            e2.episode_id,
            count(fu.scheduled_start) filter (
                where fu.scheduled_start < k2.as_of + {{ days_interval(var('poc_lookahead_days')) }}
            ) as booked,
            least(
                -- a double on both engines (Spark's floor returns bigint): the reason text shows it as '4.0'
                cast(floor(e2.frequency_per_week * {{ var('poc_lookahead_days') }} / 7.0) as double),
                greatest(e2.planned_visits - e2.attended_visits, 0)
            ) as needed
        from active as e2
        inner join future as fu using (episode_id)
        cross join k as k2
        where e2.frequency_per_week is not null and e2.planned_visits is not null
        group by e2.episode_id, e2.frequency_per_week, e2.planned_visits, e2.attended_visits
    ) as b using (episode_id)
    where b.booked < b.needed
    union all
    -- 6. authorizations with <= 2 visits or <= 7 days left
    select
        'auth_expiring',
        a.auth_id,
        null,
        e.clinic_id,
        e.patient_id,
        e.referral_id,
        e.episode_id,
        null,
        'Authorization ' || a.auth_id || ': ' || a.visits_left || ' of ' || a.visits_authorized
        || ' visits left, valid to ' || {{ format_ts('a.valid_to', '%Y-%m-%d') }} || ': request an extension.',
        a.visits_left <= 0 or a.valid_to < k.as_of_date,
        least(cast(a.valid_to as timestamp), k.as_of + interval 1 day),
        a.received_at
    from (
        select
            au.*,
            au.visits_authorized - (
                select count(*) from {{ ref('appointments') }} as v
                where v.episode_id = au.episode_id and v.status = 'completed'
                    and cast(v.scheduled_start as date) between au.valid_from and au.valid_to
            ) as visits_left
        from {{ ref('stg_raw__authorizations') }} as au
        qualify row_number() over (partition by au.episode_id order by au.valid_to desc, au.auth_id desc) = 1
    ) as a
    inner join active as e using (episode_id)
    cross join k
    where a.valid_to >= k.as_of_date - 7
        and (a.visits_left <= 2 or a.valid_to <= k.as_of_date + 7)
    union all
    -- 7. Medicare patients nearing the KX threshold this calendar year
    select
        'medicare_kx_threshold',
        {{ patient_key('m.patient_id') }} || ':' || m.yr,
        null,
        m.clinic_id,
        m.patient_id,
        m.referral_id,
        m.episode_id,
        null,
        'Medicare therapy charges this year $' || cast(round(m.ytd_usd) as bigint) || ' of the $'
        || {{ var('kx_threshold_usd') }} || ' KX threshold: add the KX modifier and document medical necessity.',
        m.ytd_usd >= {{ var('kx_threshold_usd') }},
        k.as_of + interval 1 day,
        -- arose the day this year's charges reached the warning share (stable from build to build)
        cast(m.warned_on as timestamp)
    from (
        select
            e.patient_id,
            year(k.as_of_date) as yr,
            any_value(e.clinic_id) as clinic_id,
            any_value(e.referral_id) as referral_id,
            any_value(e.episode_id) as episode_id,
            any_value(ytd.ytd_usd) as ytd_usd,
            any_value(ytd.warned_on) as warned_on
        from active as e
        cross join k
        inner join (
            select
                patient_id,
                sum(charge_usd) as ytd_usd,
                min(service_date) filter (
                    where running_usd >= {{ var('kx_warn_share') }} * {{ var('kx_threshold_usd') }}
                ) as warned_on
            from (
                select
                    cl.patient_id,
                    cl.service_date,
                    cl.charge_usd,
                    -- to the end of each day (the default range frame): one day's lines share one running total
                    sum(cl.charge_usd) over (partition by cl.patient_id order by cl.service_date) as running_usd
                from {{ ref('int_charge_lines_classified') }} as cl, k as k3
                where year(cl.service_date) = year(k3.as_of_date)
            ) as run
            group by patient_id
        ) as ytd using (patient_id)
        where e.payer_class = 'medicare'
        group by e.patient_id, year(k.as_of_date)
    ) as m
    -- the subquery's own k is another scope: the same alias is not ambiguous here
    cross join k  -- noqa: AL04
    where m.ytd_usd >= {{ var('kx_warn_share') }} * {{ var('kx_threshold_usd') }}
    union all
    -- 9. unsigned notes past 24 h (clinician queue)
    select
        'unsigned_note',
        n.note_id,
        null,
        n.clinic_id,
        n.patient_id,
        e.referral_id,
        n.episode_id,
        n.appointment_id,
        'Unsigned ' || replace(n.note_type, '_', ' ') || ' from ' || {{ format_ts('n.service_date', '%Y-%m-%d') }}
        || ' (therapist ' || n.therapist_id || '), open more than 24 h: sign it. (Notes of the last '
        || {{ var('unsigned_note_lookback_days') }} || ' days; older ones are on the compliance report.)',
        false,
        n.created_at + interval 24 hour,
        n.created_at
    from {{ ref('int_notes_unsigned') }} as n
    left join {{ ref('episodes') }} as e using (episode_id)
    cross join k
    where n.created_at + interval 24 hour <= k.as_of
        and n.created_at >= k.as_of - {{ days_interval(var('unsigned_note_lookback_days')) }}
),

-- queue and priority come from the one vocabulary (seed work_queue_rules, read by the app too): a rule's
-- escalated priority applies when its branch says the case has become urgent
keyed as (
    select
        t.rule || ':' || t.entity_id as task_id,
        {{ star_except(['queue_unused', 'is_escalated'], 't') }},
        r.queue,
        case when t.is_escalated then coalesce(r.escalated_priority, r.priority) else r.priority end as priority
    from tasks as t
    left join {{ ref('work_queue_rules') }} as r on t.rule = r.rule
),

-- each task's app actions in the order the app folds them (acted_at to the second, then action_id); an action
-- naming an occurrence before the task's current one (its created_at then, to the second) is of a past occurrence
acted as (
    select
        x.task_id,
        x.action,
        x.actor,
        x.acted_at,
        x.outcome,
        x.snooze_until,
        x.assignee,
        x.action = 'mark_lost' or {{ app_closing_action('x.action', 'x.outcome') }} as closes,
        coalesce(
            t.created_at >= try_cast(
                left(replace({{ json_text('x.payload', '$.occurrence') }}, 'T', ' '), 19) as timestamp
            ) + interval 1 second,
            false
        ) as of_past_occurrence,
        row_number() over (partition by x.task_id order by x.acted_at, x.action_id) as seq
    from {{ ref('stg_app__actions') }} as x
    inner join keyed as t using (task_id)
),

-- rule 1: the actions of the current occurrence are those after the last one naming a past occurrence
current_actions as (
    select *
    from (
        select
            *,
            max(case when of_past_occurrence then seq end) over (partition by task_id) as past_until
        from acted
    ) as a
    where seq > coalesce(past_until, 0)
),

actions as (
    select
        task_id,
        bool_or(closes) as is_closed,  -- rule 2: the first closing action closes it for good
        -- rule 3: the latest action decides; a snooze counts only while it is the latest action
        case when max_by(action, seq) = 'snooze' then max_by(snooze_until, seq) end as snoozed_until,
        max_by(actor, seq) filter (where action = 'claim') as claimed_by,
        max_by(assignee, seq) filter (where action = 'assign') as assignee,
        max(acted_at) filter (where action = 'log_outreach') as last_outreach_at,
        max_by(outcome, seq) filter (where action = 'log_outreach') as last_outreach_outcome,
        max_by(action, seq) as last_action,
        max(acted_at) as last_action_at
    from current_actions
    group by task_id
)

select
    t.task_id,
    t.rule,
    t.queue,
    t.clinic_id,
    t.patient_id,
    {{ patient_key('t.patient_id') }} as patient_key,
    t.referral_id,
    t.episode_id,
    t.appointment_id,
    t.reason,
    t.priority,
    greatest(t.due_at, coalesce(a.snoozed_until, t.due_at)) as due_at,
    t.due_at as original_due_at,
    t.created_at,
    a.snoozed_until,
    a.claimed_by,
    a.assignee,
    a.last_outreach_at,
    a.last_outreach_outcome,
    a.last_action,
    a.last_action_at,
    row_number() over (
        order by t.priority, greatest(t.due_at, coalesce(a.snoozed_until, t.due_at)), t.task_id
    ) as queue_rank
from keyed as t
left join actions as a using (task_id)
where not coalesce(a.is_closed, false)
