{# dbt-spark's session connection binds seed values by wrapping each in quotes without escaping, so a seed text
   with an apostrophe (work_queue_rules) breaks the INSERT. Seeds are small reference files: render each value as
   an escaped SQL literal instead (found by dispatch before dbt-spark's own spark__load_csv_rows). #}
{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(get_batch_size()) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for col_name in agate_table.column_names -%}
                    {%- set type = column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) -%}
                    {%- set v = row[loop.index0] -%}
                    cast({{ _spark_literal(v) }} as {{ type }}){{ ',' if not loop.last }}
                {%- endfor -%}){{ ',' if not loop.last }}
            {% endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- if loop.index0 == 0 -%}{%- do statements.append(sql) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(statements[0]) }}
{% endmacro %}

{% macro _spark_literal(v) -%}
    {%- if v is none -%}null
    {%- elif v is sameas true -%}true
    {%- elif v is sameas false -%}false
    {%- elif v is number -%}{{ v }}
    {%- else -%}'{{ v | string | replace('\\', '\\\\') | replace("'", "\\'") }}'
    {%- endif -%}
{%- endmacro %}
