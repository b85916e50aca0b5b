# Sources of the checkout service (facepay/service.h), added to libfacepay.
# Included from core/CMakeLists.txt; owned by the service code.
set(FPAY_SERVICE_SOURCES
  # data layer
  ${CMAKE_CURRENT_LIST_DIR}/ids.c
  ${CMAKE_CURRENT_LIST_DIR}/keys.c
  ${CMAKE_CURRENT_LIST_DIR}/envelope.c
  ${CMAKE_CURRENT_LIST_DIR}/store_sqlite.c
  ${CMAKE_CURRENT_LIST_DIR}/throttle.c
  ${CMAKE_CURRENT_LIST_DIR}/audit.c
  # enroll/verify logic and calibration
  ${CMAKE_CURRENT_LIST_DIR}/service.c
  ${CMAKE_CURRENT_LIST_DIR}/calibrate.c
)
