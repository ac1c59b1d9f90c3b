# Test registration. Conventions:
#  test/test_<name>.c   one cmocka binary per module, label "unit" (or "model"
#                       when its name is listed in MDI_MODEL_TESTS: it reads
#                       ../shared/models)
#  test/e2e_<name>.sh   end-to-end scripts run with bash, label "e2e"
# Every test sees MDI_MODELS_DIR, MDI_BUILD_DIR, MDI_SOURCE_DIR, MDI_LLM,
# MDI_CONVERT and MDI_MPIEXEC (mpiexec plus the flags this machine needs);
# MDI_FIFO_READER (test/fifo_reader.c); MDI_ALLOC_COUNT_LIB outside sanitizer
# builds.
set(MDI_MODEL_TESTS tokenizer_llama2 tokenizer_model_file convert_formats stage_ref)

set(MDI_MPIEXEC_FLAGS --oversubscribe --mca mpi_yield_when_idle 1 --mca btl self,vader,tcp)
execute_process(COMMAND id -u OUTPUT_VARIABLE MDI_UID OUTPUT_STRIP_TRAILING_WHITESPACE)
if(MDI_UID STREQUAL "0")
  list(APPEND MDI_MPIEXEC_FLAGS --allow-run-as-root)
endif()
string(REPLACE ";" " " MDI_MPIEXEC_STR "${MPIEXEC_EXECUTABLE};${MDI_MPIEXEC_FLAGS}")

set(MDI_TEST_ENV
  "MDI_MODELS_DIR=${MDI_MODELS_DIR}"
  "MDI_BUILD_DIR=${CMAKE_BINARY_DIR}"
  "MDI_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "MDI_LLM=$<TARGET_FILE:mdi-llm>"
  "MDI_CONVERT=$<TARGET_FILE:mdi-convert>"
  "MDI_MPIEXEC=${MDI_MPIEXEC_STR}"
  "BLIS_ARCH_TYPE=6"
  "OMP_NUM_THREADS=1")

add_executable(fifo_reader ${CMAKE_SOURCE_DIR}/test/fifo_reader.c)
list(APPEND MDI_TEST_ENV "MDI_FIFO_READER=$<TARGET_FILE:fifo_reader>")

# The allocation counter of e2e_alloc.sh wraps malloc; a sanitizer's runtime
# must own malloc itself, so sanitizer builds run that test as a skip.
if(NOT MDI_SANITIZE)
  add_library(alloc_count MODULE ${CMAKE_SOURCE_DIR}/test/alloc_count.c)
  list(APPEND MDI_TEST_ENV "MDI_ALLOC_COUNT_LIB=$<TARGET_FILE:alloc_count>")
endif()

file(GLOB MDI_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/test/test_*.c)
foreach(src ${MDI_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  string(REPLACE "test_" "" short ${name})
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/test)
  target_link_libraries(${name} PRIVATE mdiconv mdi PkgConfig::CMOCKA)
  add_test(NAME ${short} COMMAND ${name})
  set(label unit)
  if(short IN_LIST MDI_MODEL_TESTS)
    set(label model)
  endif()
  set_tests_properties(${short} PROPERTIES LABELS ${label} ENVIRONMENT "${MDI_TEST_ENV}" TIMEOUT 600)
endforeach()

file(GLOB MDI_E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/test/e2e_*.sh)
foreach(src ${MDI_E2E_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME ${name} COMMAND bash ${src})
  set_tests_properties(${name} PROPERTIES LABELS e2e ENVIRONMENT "${MDI_TEST_ENV}" TIMEOUT 900)
endforeach()
