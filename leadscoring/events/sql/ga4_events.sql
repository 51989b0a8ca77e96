-- GA4 BigQuery export (daily events_YYYYMMDD tables or files): one row per event, as the
-- flat event relation every feature reads. Parameters are looked up in the repeated
-- event_params (key + {string_value, int_value, float_value, double_value}): by a subquery
-- over UNNEST (portable: transpiled for BigQuery), or in DuckDB by list lambdas (the same
-- first matching parameter, about a hundred times faster there).
{%- macro first(name, value) -%}
{%- if portable -%}
(SELECT {{ value }} FROM UNNEST(e.event_params) AS t(p) WHERE p.key = {{ bind(name) }})
{%- else -%}
list_transform(list_filter(e.event_params, lambda p: p.key = {{ bind(name) }}), lambda p: {{ value }})[1]
{%- endif -%}
{%- endmacro %}
SELECT
  CAST(e.{{ key | ident }} AS VARCHAR) AS visitor,
  make_timestamp(e.event_timestamp) AS ts,
  e.event_name AS event_name,
  CAST({{ first("ga_session_id", "p.value.int_value") }} AS VARCHAR)
    AS session_id,
  {{ first("engagement_time_msec", "COALESCE(CAST(p.value.int_value AS DOUBLE), p.value.double_value, p.value.float_value)") }}
    AS engagement_ms,
  e.traffic_source.source AS source,
  {{ first("page_location", "p.value.string_value") }} AS page
{%- for param in params %},
  {{ first(param, "COALESCE(p.value.double_value, p.value.float_value, CAST(p.value.int_value AS DOUBLE), TRY_CAST(p.value.string_value AS DOUBLE))") }}
    AS {{ ("value_" ~ param) | ident }}
{%- endfor %}
FROM {{ source }} AS e
{%- if where %}
WHERE {{ where }}
{%- endif %}
