{# Portable SQL (issue 15, docs/scale.md "Past one box"): one adapter-dispatched macro per construct that DuckDB and
   Spark spell differently. duckdb__ renders exactly the SQL the models used before, so the DuckDB build is
   unchanged; spark__ is for dbt-spark (Spark 4, tests/spark); default__ is the Spark spelling, the closer of the
   two to ANSI SQL. Everything else in the models is SQL both engines read the same way: keep it so (no `::`,
   QUALIFY only through these macros, cast(... as string), max_by/min_by rather than arg_max/arg_min). #}

{# adapter.dispatch, or the DuckDB version where there is no adapter: sqlfluff's jinja templater (make lint)
   renders the models without dbt, as DuckDB SQL. #}
{% macro _pt(name) -%}
    {#- through a variable: dbt's static parser reads only adapter.dispatch calls with a literal name -#}
    {%- if adapter is defined -%}{%- set a = adapter -%}{{ return(a.dispatch(name)) }}{%- endif -%}
    {{ return(none) }}
{%- endmacro %}


{# `<qualifier>.* ` without some columns. #}
{% macro star_except(columns, qualifier=none) -%}
    {{ return((_pt('star_except') or duckdb__star_except)(columns, qualifier)) }}
{%- endmacro %}
{% macro duckdb__star_except(columns, qualifier) -%}
    {{ qualifier ~ '.' if qualifier }}* exclude ({{ columns | join(', ') }})
{%- endmacro %}
{% macro default__star_except(columns, qualifier) -%}
    {{ qualifier ~ '.' if qualifier }}* except ({{ columns | join(', ') }})
{%- endmacro %}

{# A struct with named fields (dict: field name -> SQL expression, in order). #}
{% macro named_struct(fields) -%}
    {{ return((_pt('named_struct') or duckdb__named_struct)(fields)) }}
{%- endmacro %}
{% macro duckdb__named_struct(fields) -%}
    struct_pack({% for k, v in fields.items() %}{{ k }} := {{ v }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}
{% macro default__named_struct(fields) -%}
    named_struct({% for k, v in fields.items() %}'{{ k }}', {{ v }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}

{# A UTC wall-clock timestamp as the wall clock of IANA zone `zone` (the app writes its actions in UTC, the exports
   carry clinic-local times); a null zone, or one DuckDB does not know (a Windows name like "Central Standard Time"
   in a clinics export), leaves it as it is: one clinic's odd zone must never stop the build. #}
{% macro utc_to_local(value, zone) -%}
    {{ return((_pt('utc_to_local') or duckdb__utc_to_local)(value, zone)) }}
{%- endmacro %}
{% macro duckdb__utc_to_local(value, zone) -%}
    coalesce(
        timezone(
            case when {{ zone }} in (select tz.name from pg_timezone_names() as tz) then {{ zone }} end,
            timezone('UTC', {{ value }})
        ),
        {{ value }}
    )
{%- endmacro %}
{% macro default__utc_to_local(value, zone) -%}
    {#- from_utc_timestamp returns Spark's zoned TIMESTAMP: back to the wall-clock type every other time has. Spark
        has no list of zones and fails on a name it does not know, so only region ids ('Area/City') and UTC pass. -#}
    cast(coalesce(
        from_utc_timestamp(
            {{ value }},
            case when {{ zone }} rlike '^[A-Za-z]+(/[A-Za-z0-9_+-]+)+$' or {{ zone }} in ('UTC', 'Etc/UTC') then {{ zone }} end
        ),
        {{ value }}
    ) as timestamp_ntz)
{%- endmacro %}

{# Whole days from start to end (dates; negative when end is earlier). #}
{% macro day_diff(start_date, end_date) -%}
    {{ return((_pt('day_diff') or duckdb__day_diff)(start_date, end_date)) }}
{%- endmacro %}
{% macro duckdb__day_diff(start_date, end_date) -%}
    date_diff('day', {{ start_date }}, {{ end_date }})
{%- endmacro %}
{% macro default__day_diff(start_date, end_date) -%}
    datediff({{ end_date }}, {{ start_date }})
{%- endmacro %}

{# Integer division of integers (operands are never negative where it is used). #}
{% macro int_div(num, den) -%}
    {{ return((_pt('int_div') or duckdb__int_div)(num, den)) }}
{%- endmacro %}
{% macro duckdb__int_div(num, den) -%}
    ({{ num }} // {{ den }})
{%- endmacro %}
{% macro default__int_div(num, den) -%}
    ({{ num }} div {{ den }})
{%- endmacro %}

{# Seconds from timestamp a to timestamp b, as a double. #}
{% macro seconds_between(a, b) -%}
    {{ return((_pt('seconds_between') or duckdb__seconds_between)(a, b)) }}
{%- endmacro %}
{% macro duckdb__seconds_between(a, b) -%}
    (epoch({{ b }}) - epoch({{ a }}))
{%- endmacro %}
{% macro default__seconds_between(a, b) -%}
    (cast(timestampdiff(MICROSECOND, {{ a }}, {{ b }}) as double) / 1000000.0)
{%- endmacro %}

{# A date or timestamp as text; fmt in strftime spelling (only %Y %m %d %H %M %S %a are translated). #}
{% macro format_ts(value, fmt) -%}
    {{ return((_pt('format_ts') or duckdb__format_ts)(value, fmt)) }}
{%- endmacro %}
{% macro duckdb__format_ts(value, fmt) -%}
    strftime({{ value }}, '{{ fmt }}')
{%- endmacro %}
{% macro default__format_ts(value, fmt) -%}
    {%- set java = fmt | replace('%Y', 'yyyy') | replace('%m', 'MM') | replace('%d', 'dd') | replace('%H', 'HH')
        | replace('%M', 'mm') | replace('%S', 'ss') | replace('%a', 'EEE') -%}
    date_format({{ value }}, '{{ java }}')
{%- endmacro %}

{# Replace every match of a regular expression. #}
{% macro regexp_replace_all(value, pattern, replacement) -%}
    {{ return((_pt('regexp_replace_all') or duckdb__regexp_replace_all)(value, pattern, replacement)) }}
{%- endmacro %}
{% macro duckdb__regexp_replace_all(value, pattern, replacement) -%}
    regexp_replace({{ value }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}
{% macro default__regexp_replace_all(value, pattern, replacement) -%}
    regexp_replace({{ value }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}

{# Text without diacritics (matching keys: José = Jose). Spark has no strip_accents: the Latin-1 and Latin
   Extended-A letters are translated, which covers the names a US practice records. #}
{% macro strip_accents(value) -%}
    {{ return((_pt('strip_accents') or duckdb__strip_accents)(value)) }}
{%- endmacro %}
{% macro duckdb__strip_accents(value) -%}
    strip_accents({{ value }})
{%- endmacro %}
{% macro default__strip_accents(value) -%}
    translate(
        {{ value }},
        'ÀÁÂÃÄÅàáâãäåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÕÖØòóôõöøÙÚÛÜùúûüÝýÿŠšŽžČčĆćŁłŃńŚśŹźŻżĘęĄąŘřŇňĚěŮů',
        'AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOOooooooUUUUuuuuYyySsZzCcCcLlNnSsZzZzEeAaRrNnEeUu'
    )
{%- endmacro %}

{# Text values joined with a separator, in an order. #}
{% macro string_agg_ordered(value, separator, order_by) -%}
    {{ return((_pt('string_agg_ordered') or duckdb__string_agg_ordered)(value, separator, order_by)) }}
{%- endmacro %}
{% macro duckdb__string_agg_ordered(value, separator, order_by) -%}
    string_agg({{ value }}, '{{ separator }}' order by {{ order_by }})
{%- endmacro %}
{% macro default__string_agg_ordered(value, separator, order_by) -%}
    listagg({{ value }}, '{{ separator }}') within group (order by {{ order_by }})
{%- endmacro %}

{# A select-list expression that yields one row per day from start to end (both dates, inclusive). #}
{% macro day_series(start_date, end_date) -%}
    {{ return((_pt('day_series') or duckdb__day_series)(start_date, end_date)) }}
{%- endmacro %}
{% macro duckdb__day_series(start_date, end_date) -%}
    cast(unnest(generate_series({{ start_date }}, {{ end_date }}, interval 1 day)) as date)
{%- endmacro %}
{% macro default__day_series(start_date, end_date) -%}
    explode(sequence(cast({{ start_date }} as date), cast({{ end_date }} as date), interval 1 day))
{%- endmacro %}

{# Whether a '|'-separated text list (therapists.work_days) contains a value. #}
{% macro pipe_list_contains(list_text, value) -%}
    {{ return((_pt('pipe_list_contains') or duckdb__pipe_list_contains)(list_text, value)) }}
{%- endmacro %}
{% macro duckdb__pipe_list_contains(list_text, value) -%}
    list_contains(string_split({{ list_text }}, '|'), {{ value }})
{%- endmacro %}
{% macro default__pipe_list_contains(list_text, value) -%}
    array_contains(split({{ list_text }}, '[|]'), {{ value }})
{%- endmacro %}

{# An exact integer type wide enough for sums of microseconds. #}
{% macro type_int128() -%}
    {{ return((_pt('type_int128') or duckdb__type_int128)()) }}
{%- endmacro %}
{% macro duckdb__type_int128() -%}
    hugeint
{%- endmacro %}
{% macro default__type_int128() -%}
    decimal(38, 0)
{%- endmacro %}

{# 1-based position of expr in a list of text literals (a Jinja list), null when absent. #}
{% macro list_position_of(values, expr) -%}
    {{ return((_pt('list_position_of') or duckdb__list_position_of)(values, expr)) }}
{%- endmacro %}
{% macro duckdb__list_position_of(values, expr) -%}
    list_position({{ values }}, {{ expr }})
{%- endmacro %}
{% macro default__list_position_of(values, expr) -%}
    nullif(array_position(array({% for v in values %}'{{ v }}'{{ ', ' if not loop.last }}{% endfor %}), {{ expr }}), 0)
{%- endmacro %}

{# A JSON text's field as text (null when the text is not JSON or lacks the field). #}
{% macro json_text(json_col, path) -%}
    {{ return((_pt('json_text') or duckdb__json_text)(json_col, path)) }}
{%- endmacro %}
{% macro duckdb__json_text(json_col, path) -%}
    json_extract_string(try_cast({{ json_col }} as json), '{{ path }}')
{%- endmacro %}
{% macro default__json_text(json_col, path) -%}
    get_json_object({{ json_col }}, '{{ path }}')
{%- endmacro %}

{# `<qualifier>.*` with some columns replaced (dict: column -> SQL expression), in the relation's column order.
   Spark has no `* replace`: its columns are listed from the relation (dbt's catalog, at run time). #}
{% macro star_replace(relation, qualifier, replacements) -%}
    {{ return((_pt('star_replace') or duckdb__star_replace)(relation, qualifier, replacements)) }}
{%- endmacro %}
{% macro duckdb__star_replace(relation, qualifier, replacements) -%}
    {{ qualifier }}.* replace ({% for c, e in replacements.items() %}{{ e }} as {{ c }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}
{% macro default__star_replace(relation, qualifier, replacements) -%}
    {%- if execute -%}
        {%- for col in adapter.get_columns_in_relation(relation) -%}
            {{ replacements[col.name] ~ ' as ' ~ col.name if col.name in replacements else qualifier ~ '.' ~ col.name }}
            {{- ', ' if not loop.last }}
        {%- endfor -%}
    {%- else -%}
        {{ qualifier }}.*
    {%- endif -%}
{%- endmacro %}

{# `materialized` for a CTE that DuckDB should compute once (read by several branches); Spark has no such hint
   (its optimiser reuses exchanges itself), so nothing is rendered there. #}
{% macro cte_materialized() -%}
    {{ return((_pt('cte_materialized') or duckdb__cte_materialized)()) }}
{%- endmacro %}
{% macro duckdb__cte_materialized() -%}
    materialized
{%- endmacro %}
{% macro default__cte_materialized() -%}
{%- endmacro %}

{# The wall-clock time of the build, without time zone (DuckDB's current_localtimestamp). #}
{% macro local_now() -%}
    {{ return((_pt('local_now') or duckdb__local_now)()) }}
{%- endmacro %}
{% macro duckdb__local_now() -%}
    current_localtimestamp()
{%- endmacro %}
{% macro default__local_now() -%}
    localtimestamp()
{%- endmacro %}

{# An interval of n days / n hours, to add to or subtract from a timestamp. #}
{% macro days_interval(n) -%}
    {{ return((_pt('days_interval') or duckdb__days_interval)(n)) }}
{%- endmacro %}
{% macro duckdb__days_interval(n) -%}
    to_days({{ n }})
{%- endmacro %}
{% macro default__days_interval(n) -%}
    make_dt_interval({{ n }})
{%- endmacro %}
{% macro hours_interval(n) -%}
    {{ return((_pt('hours_interval') or duckdb__hours_interval)(n)) }}
{%- endmacro %}
{% macro duckdb__hours_interval(n) -%}
    to_hours({{ n }})
{%- endmacro %}
{% macro default__hours_interval(n) -%}
    make_dt_interval(0, {{ n }})
{%- endmacro %}

{# How many values a '|'-separated text list holds. #}
{% macro pipe_list_length(list_text) -%}
    {{ return((_pt('pipe_list_length') or duckdb__pipe_list_length)(list_text)) }}
{%- endmacro %}
{% macro duckdb__pipe_list_length(list_text) -%}
    len(string_split({{ list_text }}, '|'))
{%- endmacro %}
{% macro default__pipe_list_length(list_text) -%}
    size(split({{ list_text }}, '[|]'))
{%- endmacro %}
