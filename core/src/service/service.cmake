# Sources of the checkout service (facepay/service.h), added to libfacepay.
# Included from core/CMakeLists.txt; owned by the service code.
set(FPAY_SERVICE_SOURCES
)
