// Android library module wrapping the gridsync core (uniffi Kotlin bindings + JNI libraries).
// Build the native libraries and the Kotlin sources first: bindings/scripts/build-android.sh
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "gridsync-android"
