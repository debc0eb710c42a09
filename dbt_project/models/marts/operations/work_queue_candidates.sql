-- One row per open work-queue task (task_id = 'rule:entity_id', stable across builds; never a patient id: the
-- per-patient KX rule uses the keyed patient_key, re-keyed in app actions by `ptpulse secret rotate`), with a reason a
-- person can act on, a priority (1 = most urgent) and a due time, from every queue rule
-- (seeds/work_queue_rules.csv) except the no-show-risk one (the ML step writes it as ml.work_queue_tasks).
-- App actions are applied: a task marked lost disappears, and so does a done one (its latest action is a confirm
-- or an outreach that booked the visit, as the app folds it);
-- a snooze moves due_at to the snooze end; claims and assignments are shown; an outreach logged on a referral
-- task counts as first contact (through referral_funnel).
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

active as (
    select e.*
    from {{ ref('episodes') }} as e
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
        coalesce(e.last_visit_at, cast(e.eval_date as timestamp))
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
        k.as_of
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
        k.as_of
    from (
        select
            e.patient_id,
            year(k.as_of_date) as yr,
            any_value(e.clinic_id) as clinic_id,
            any_value(e.referral_id) as referral_id,
            any_value(e.episode_id) as episode_id,
            any_value(ytd.ytd_usd) as ytd_usd
        from active as e
        cross join k
        inner join (
            select
                cl.patient_id,
                sum(cl.charge_usd) as ytd_usd
            from {{ ref('int_charge_lines_classified') }} as cl, k as k3
            where year(cl.service_date) = year(k3.as_of_date)
            group by cl.patient_id
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

actions as (
    select
        task_id,
        bool_or(action = 'mark_lost') as is_lost,
        coalesce(
            max_by(
                {{ app_closing_action('action', 'outcome') }},
                {{ named_struct({'t': 'acted_at', 'id': 'action_id'}) }}
            ),
            false
        ) as is_done,
        max(snooze_until) filter (where action = 'snooze') as snoozed_until,
        max_by(actor, acted_at) filter (where action = 'claim') as claimed_by,
        max_by(assignee, acted_at) filter (where action = 'assign') as assignee,
        max(acted_at) filter (where action = 'log_outreach') as last_outreach_at,
        max_by(outcome, acted_at) filter (where action = 'log_outreach') as last_outreach_outcome,
        max_by(action, acted_at) as last_action,
        max(acted_at) as last_action_at
    from {{ ref('stg_app__actions') }}
    group by task_id
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
where not coalesce(a.is_lost, false) and not coalesce(a.is_done, false)
