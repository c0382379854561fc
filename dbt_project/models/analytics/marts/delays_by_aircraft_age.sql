-- Arrival delays by the age of the aircraft (2013 minus its year of manufacture, in 5-year
-- bands; -1 for aircraft missing from the fleet registry).
with aged as (
    select
        flights.arr_delay,
        case
            when planes.year is null then -1
            else cast(floor((2013 - planes.year) / 5.0) * 5 as integer)
        end as age_band_years
    from {{ source('operations', 'flights') }} as flights
    left join {{ source('fleet', 'planes') }} as planes
        on planes.tailnum = flights.tailnum
)

select
    age_band_years,
    count(*) as flights,
    avg(arr_delay) as mean_arr_delay_min
from aged
group by age_band_years
