-- GA4 BigQuery export (daily events_YYYYMMDD tables or files): one row per event, as the
-- flat event relation every feature reads. Parameters are looked up in the repeated
-- event_params (key + {string_value, int_value, float_value, double_value}).
SELECT
  CAST(e.{{ key }} AS VARCHAR) AS visitor,
  make_timestamp(e.event_timestamp) AS ts,
  e.event_name AS event_name,
  CAST((SELECT p.value.int_value FROM UNNEST(e.event_params) AS t(p) WHERE p.key = 'ga_session_id') AS VARCHAR)
    AS session_id,
  (SELECT COALESCE(CAST(p.value.int_value AS DOUBLE), p.value.double_value, p.value.float_value)
     FROM UNNEST(e.event_params) AS t(p) WHERE p.key = 'engagement_time_msec') AS engagement_ms,
  e.traffic_source.source AS source,
  (SELECT p.value.string_value FROM UNNEST(e.event_params) AS t(p) WHERE p.key = 'page_location') AS page
{%- for param in params %},
  (SELECT COALESCE(p.value.double_value, p.value.float_value, CAST(p.value.int_value AS DOUBLE),
                   TRY_CAST(p.value.string_value AS DOUBLE))
     FROM UNNEST(e.event_params) AS t(p) WHERE p.key = '{{ param }}') AS "value_{{ param }}"
{%- endfor %}
FROM {{ source }} AS e
{%- if where %}
WHERE {{ where }}
{%- endif %}
